package com.example.warehouse.inventory;

import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.stereotype.Service;
import org.springframework.transaction.annotation.Transactional;

/**
 * Reserves and releases stock for orders.
 *
 * <p>A reservation holds stock for a limited time so that a customer who is still paying does not
 * lose the item to someone else. Expired reservations are released by {@link #releaseExpired()},
 * which a scheduler calls every minute.
 */
@Service
public class InventoryService {

    private static final Logger LOG = LoggerFactory.getLogger(InventoryService.class);
    private static final long RESERVATION_TTL_SECONDS = 15 * 60;

    private final StockRepository stock;
    private final ReservationRepository reservations;
    private final Clock clock;
    private final Map<String, Object> skuLocks = new ConcurrentHashMap<>();

    public InventoryService(StockRepository stock, ReservationRepository reservations, Clock clock) {
        this.stock = Objects.requireNonNull(stock, "stock");
        this.reservations = Objects.requireNonNull(reservations, "reservations");
        this.clock = Objects.requireNonNull(clock, "clock");
    }

    /**
     * Reserves {@code quantity} units of {@code sku} for {@code orderId}.
     *
     * @return the reservation, or empty if there is not enough available stock
     * @throws IllegalArgumentException if quantity is not positive
     */
    @Transactional
    public Optional<Reservation> reserve(String orderId, String sku, int quantity) {
        if (quantity <= 0) {
            throw new IllegalArgumentException("quantity must be positive, was " + quantity);
        }
        synchronized (lockFor(sku)) {
            StockLevel level = stock.findBySku(sku)
                    .orElseThrow(() -> new UnknownSkuException(sku));
            int available = level.onHand() - level.reserved();
            if (available < quantity) {
                LOG.info("Cannot reserve {} x {} for order {}: only {} available", quantity, sku, orderId, available);
                return Optional.empty();
            }
            Instant now = clock.instant();
            Reservation reservation = new Reservation(
                    orderId, sku, quantity, now, now.plusSeconds(RESERVATION_TTL_SECONDS));
            stock.save(level.withReserved(level.reserved() + quantity));
            reservations.save(reservation);
            LOG.debug("Reserved {} x {} for order {} until {}", quantity, sku, orderId, reservation.expiresAt());
            return Optional.of(reservation);
        }
    }

    /** Turns a reservation into a shipment: stock leaves the warehouse. */
    @Transactional
    public void commit(String orderId) {
        for (Reservation r : reservations.findByOrderId(orderId)) {
            synchronized (lockFor(r.sku())) {
                StockLevel level = stock.findBySku(r.sku()).orElseThrow(() -> new UnknownSkuException(r.sku()));
                stock.save(new StockLevel(r.sku(), level.onHand() - r.quantity(), level.reserved() - r.quantity()));
                reservations.delete(r);
            }
        }
    }

    /** Releases reservations whose time is up; returns how many were released. */
    @Transactional
    public int releaseExpired() {
        Instant now = clock.instant();
        List<Reservation> expired = new ArrayList<>(reservations.findExpiredBefore(now));
        for (Reservation r : expired) {
            synchronized (lockFor(r.sku())) {
                stock.findBySku(r.sku()).ifPresent(level ->
                        stock.save(level.withReserved(Math.max(0, level.reserved() - r.quantity()))));
                reservations.delete(r);
            }
        }
        if (!expired.isEmpty()) {
            LOG.info("Released {} expired reservations", expired.size());
        }
        return expired.size();
    }

    private Object lockFor(String sku) {
        return skuLocks.computeIfAbsent(sku, k -> new Object());
    }

    public record StockLevel(String sku, int onHand, int reserved) {
        public StockLevel withReserved(int newReserved) {
            return new StockLevel(sku, onHand, newReserved);
        }
    }

    public record Reservation(String orderId, String sku, int quantity, Instant createdAt, Instant expiresAt) {}

    public static class UnknownSkuException extends RuntimeException {
        public UnknownSkuException(String sku) {
            super("Unknown SKU: " + sku);
        }
    }
}
