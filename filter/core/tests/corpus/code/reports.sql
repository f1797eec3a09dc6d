-- Monthly revenue and retention report.
-- Runs nightly; results land in analytics.monthly_report and feed the finance dashboard.

CREATE SCHEMA IF NOT EXISTS analytics;

CREATE TABLE IF NOT EXISTS analytics.monthly_report (
    month            date        NOT NULL,
    region           text        NOT NULL,
    new_customers    integer     NOT NULL,
    active_customers integer     NOT NULL,
    revenue_cents    bigint      NOT NULL,
    refunds_cents    bigint      NOT NULL DEFAULT 0,
    retention_pct    numeric(5,2),
    computed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (month, region)
);

WITH first_orders AS (
    SELECT customer_id,
           date_trunc('month', min(created_at))::date AS cohort_month
    FROM orders
    WHERE status IN ('paid', 'shipped', 'delivered')
    GROUP BY customer_id
),
monthly AS (
    SELECT date_trunc('month', o.created_at)::date AS month,
           c.region,
           o.customer_id,
           sum(o.total_cents)                      AS revenue_cents,
           sum(coalesce(r.amount_cents, 0))        AS refunds_cents
    FROM orders o
    JOIN customers c ON c.id = o.customer_id
    LEFT JOIN refunds r ON r.order_id = o.id AND r.status = 'completed'
    WHERE o.created_at >= date_trunc('month', now()) - interval '13 months'
      AND o.status IN ('paid', 'shipped', 'delivered')
    GROUP BY 1, 2, 3
),
retained AS (
    SELECT cur.month,
           cur.region,
           count(DISTINCT cur.customer_id) FILTER (
               WHERE EXISTS (
                   SELECT 1 FROM monthly prev
                   WHERE prev.customer_id = cur.customer_id
                     AND prev.month = cur.month - interval '1 month'
               )
           ) AS retained_customers,
           count(DISTINCT prev_all.customer_id) AS previous_customers
    FROM monthly cur
    LEFT JOIN monthly prev_all
           ON prev_all.region = cur.region
          AND prev_all.month = cur.month - interval '1 month'
    GROUP BY 1, 2
)
INSERT INTO analytics.monthly_report AS t
    (month, region, new_customers, active_customers, revenue_cents, refunds_cents, retention_pct)
SELECT m.month,
       m.region,
       count(DISTINCT m.customer_id) FILTER (WHERE f.cohort_month = m.month) AS new_customers,
       count(DISTINCT m.customer_id)                                        AS active_customers,
       sum(m.revenue_cents)                                                 AS revenue_cents,
       sum(m.refunds_cents)                                                 AS refunds_cents,
       round(100.0 * max(r.retained_customers) / nullif(max(r.previous_customers), 0), 2)
FROM monthly m
JOIN first_orders f USING (customer_id)
LEFT JOIN retained r ON r.month = m.month AND r.region = m.region
GROUP BY m.month, m.region
ON CONFLICT (month, region) DO UPDATE
SET new_customers    = EXCLUDED.new_customers,
    active_customers = EXCLUDED.active_customers,
    revenue_cents    = EXCLUDED.revenue_cents,
    refunds_cents    = EXCLUDED.refunds_cents,
    retention_pct    = EXCLUDED.retention_pct,
    computed_at      = now();

-- Sanity check: flag months where refunds exceed 15% of revenue.
SELECT month, region, revenue_cents / 100.0 AS revenue, refunds_cents / 100.0 AS refunds,
       round(100.0 * refunds_cents / nullif(revenue_cents, 0), 1) AS refund_pct
FROM analytics.monthly_report
WHERE refunds_cents > 0.15 * revenue_cents
ORDER BY month DESC, region;
