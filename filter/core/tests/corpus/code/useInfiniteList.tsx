import React, { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { FC, ReactNode } from "react";

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface UseInfiniteListOptions<T> {
  /** Loads one page; `cursor` is null for the first page. */
  fetchPage: (cursor: string | null, signal: AbortSignal) => Promise<Page<T>>;
  /** Stable key for each item, used to de-duplicate pages that overlap. */
  getKey: (item: T) => string;
  /** How close to the bottom (in px) the sentinel must be before loading more. */
  rootMargin?: string;
}

type Status = "idle" | "loading" | "error" | "done";

export function useInfiniteList<T>({ fetchPage, getKey, rootMargin = "400px" }: UseInfiniteListOptions<T>) {
  const [items, setItems] = useState<T[]>([]);
  const [status, setStatus] = useState<Status>("idle");
  const [error, setError] = useState<Error | null>(null);
  const cursorRef = useRef<string | null>(null);
  const seenRef = useRef<Set<string>>(new Set());
  const abortRef = useRef<AbortController | null>(null);
  const sentinelRef = useRef<HTMLDivElement | null>(null);

  const loadMore = useCallback(async () => {
    if (status === "loading" || status === "done") return;
    abortRef.current?.abort();
    const controller = new AbortController();
    abortRef.current = controller;
    setStatus("loading");
    try {
      const page = await fetchPage(cursorRef.current, controller.signal);
      const fresh = page.items.filter((item) => {
        const key = getKey(item);
        if (seenRef.current.has(key)) return false;
        seenRef.current.add(key);
        return true;
      });
      setItems((prev) => [...prev, ...fresh]);
      cursorRef.current = page.nextCursor;
      setStatus(page.nextCursor === null ? "done" : "idle");
    } catch (e) {
      if ((e as Error).name === "AbortError") return;
      setError(e as Error);
      setStatus("error");
    }
  }, [fetchPage, getKey, status]);

  const reset = useCallback(() => {
    abortRef.current?.abort();
    cursorRef.current = null;
    seenRef.current = new Set();
    setItems([]);
    setError(null);
    setStatus("idle");
  }, []);

  useEffect(() => {
    const node = sentinelRef.current;
    if (!node) return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) {
          void loadMore();
        }
      },
      { rootMargin },
    );
    observer.observe(node);
    return () => observer.disconnect();
  }, [loadMore, rootMargin]);

  useEffect(() => () => abortRef.current?.abort(), []);

  return { items, status, error, reset, loadMore, sentinelRef };
}

interface Order {
  id: string;
  customer: string;
  totalCents: number;
  createdAt: string;
}

const currency = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });

async function fetchOrders(cursor: string | null, signal: AbortSignal): Promise<Page<Order>> {
  const params = new URLSearchParams({ limit: "50" });
  if (cursor) params.set("cursor", cursor);
  const res = await fetch(`/api/v2/orders?${params.toString()}`, { signal, headers: { Accept: "application/json" } });
  if (!res.ok) {
    throw new Error(`GET /api/v2/orders failed: ${res.status} ${res.statusText}`);
  }
  return (await res.json()) as Page<Order>;
}

export const OrderList: FC<{ header?: ReactNode }> = ({ header }) => {
  const { items, status, error, reset, loadMore, sentinelRef } = useInfiniteList<Order>({
    fetchPage: fetchOrders,
    getKey: (o) => o.id,
  });

  const total = useMemo(() => items.reduce((sum, o) => sum + o.totalCents, 0), [items]);

  return (
    <section className="order-list">
      {header}
      <p className="order-list__summary">
        {items.length} orders loaded, {currency.format(total / 100)} in total
      </p>
      <ul>
        {items.map((o) => (
          <li key={o.id} className="order-list__row">
            <span className="order-list__customer">{o.customer}</span>
            <time dateTime={o.createdAt}>{new Date(o.createdAt).toLocaleDateString()}</time>
            <span className="order-list__amount">{currency.format(o.totalCents / 100)}</span>
          </li>
        ))}
      </ul>
      {status === "error" && (
        <div role="alert" className="order-list__error">
          Could not load orders: {error?.message}{" "}
          <button type="button" onClick={() => void loadMore()}>
            Retry
          </button>
          <button type="button" onClick={reset}>
            Start over
          </button>
        </div>
      )}
      {status === "loading" && <div className="spinner" aria-label="Loading" />}
      <div ref={sentinelRef} aria-hidden="true" />
    </section>
  );
};
