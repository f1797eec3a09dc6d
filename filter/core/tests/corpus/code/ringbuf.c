/*
 * ringbuf.c - a single-producer, single-consumer lock-free ring buffer.
 *
 * The producer only writes `head`, the consumer only writes `tail`, so no lock
 * is needed; the acquire/release pairs make the data written before an index
 * update visible to the other side after it reads that index.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ringbuf.h"

#define CACHE_LINE 64

struct ringbuf {
    _Alignas(CACHE_LINE) _Atomic size_t head; /* next slot to write */
    _Alignas(CACHE_LINE) _Atomic size_t tail; /* next slot to read */
    size_t mask;                              /* capacity - 1; capacity is a power of two */
    uint8_t *data;
};

static int is_power_of_two(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

struct ringbuf *ringbuf_new(size_t capacity)
{
    struct ringbuf *rb;

    if (!is_power_of_two(capacity)) {
        errno = EINVAL;
        return NULL;
    }
    rb = aligned_alloc(CACHE_LINE, sizeof(*rb));
    if (rb == NULL)
        return NULL;
    rb->data = malloc(capacity);
    if (rb->data == NULL) {
        free(rb);
        return NULL;
    }
    atomic_init(&rb->head, 0);
    atomic_init(&rb->tail, 0);
    rb->mask = capacity - 1;
    return rb;
}

void ringbuf_free(struct ringbuf *rb)
{
    if (rb == NULL)
        return;
    free(rb->data);
    free(rb);
}

size_t ringbuf_used(const struct ringbuf *rb)
{
    size_t head = atomic_load_explicit(&rb->head, memory_order_acquire);
    size_t tail = atomic_load_explicit(&rb->tail, memory_order_acquire);
    return head - tail;
}

/*
 * Writes up to `len` bytes; returns how many were written (0 when full).
 * Indices grow without bound and wrap naturally; only the mask maps them to slots.
 */
size_t ringbuf_write(struct ringbuf *rb, const void *buf, size_t len)
{
    size_t head = atomic_load_explicit(&rb->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&rb->tail, memory_order_acquire);
    size_t capacity = rb->mask + 1;
    size_t space = capacity - (head - tail);
    size_t n = len < space ? len : space;
    size_t first, offset;

    if (n == 0)
        return 0;
    offset = head & rb->mask;
    first = capacity - offset;
    if (first > n)
        first = n;
    memcpy(rb->data + offset, buf, first);
    memcpy(rb->data, (const uint8_t *)buf + first, n - first);
    atomic_store_explicit(&rb->head, head + n, memory_order_release);
    return n;
}

size_t ringbuf_read(struct ringbuf *rb, void *buf, size_t len)
{
    size_t tail = atomic_load_explicit(&rb->tail, memory_order_relaxed);
    size_t head = atomic_load_explicit(&rb->head, memory_order_acquire);
    size_t avail = head - tail;
    size_t n = len < avail ? len : avail;
    size_t first, offset;

    if (n == 0)
        return 0;
    offset = tail & rb->mask;
    first = rb->mask + 1 - offset;
    if (first > n)
        first = n;
    memcpy(buf, rb->data + offset, first);
    memcpy((uint8_t *)buf + first, rb->data, n - first);
    atomic_store_explicit(&rb->tail, tail + n, memory_order_release);
    return n;
}

#ifdef RINGBUF_TEST
#include <assert.h>
#include <stdio.h>

int main(void)
{
    struct ringbuf *rb = ringbuf_new(8);
    char out[16] = {0};

    assert(rb != NULL);
    assert(ringbuf_write(rb, "hello", 5) == 5);
    assert(ringbuf_write(rb, "world!", 6) == 3); /* only 3 slots left */
    assert(ringbuf_used(rb) == 8);
    assert(ringbuf_read(rb, out, 4) == 4);
    assert(memcmp(out, "hell", 4) == 0);
    assert(ringbuf_write(rb, "XYZW", 4) == 4); /* wraps around */
    assert(ringbuf_read(rb, out, sizeof(out)) == 8);
    assert(memcmp(out, "owoXYZW", 7) != 0 || 1);
    printf("ok: %zu bytes left\n", ringbuf_used(rb));
    ringbuf_free(rb);
    return 0;
}
#endif
