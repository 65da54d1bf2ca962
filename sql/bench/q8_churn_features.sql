-- A churn feature table: per customer, order and behaviour features up to the cutoff.
WITH bounds AS (SELECT max(order_time) - INTERVAL '90 days' AS cutoff FROM orders),
order_features AS (
    SELECT o.customer_id, count(*) AS orders, sum(o.amount) AS spend, avg(o.discount) AS avg_discount,
           floor((extract(epoch FROM min(b.cutoff)) - extract(epoch FROM max(o.order_time))) / 86400) AS days_since_order
    FROM orders o CROSS JOIN bounds b
    WHERE o.order_time <= b.cutoff
    GROUP BY o.customer_id
),
event_features AS (
    SELECT e.customer_id,
           sum(CASE WHEN e.event_type = 'view' THEN 1 ELSE 0 END) AS views,
           sum(CASE WHEN e.event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carts,
           sum(CASE WHEN e.event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
           count(DISTINCT e.session_id) AS sessions
    FROM events e CROSS JOIN bounds b
    WHERE e.event_time <= b.cutoff
    GROUP BY e.customer_id
)
SELECT c.customer_id, c.acquisition_channel, c.device, c.age_band,
       f.orders, f.spend, f.avg_discount, f.days_since_order,
       coalesce(e.views, 0) AS views, coalesce(e.carts, 0) AS carts, coalesce(e.sessions, 0) AS sessions,
       CASE WHEN coalesce(e.carts, 0) = 0 THEN 0.0
            ELSE 1.0 - CAST(coalesce(e.purchases, 0) AS DOUBLE) / e.carts END AS cart_abandonment
FROM customers c
JOIN order_features f ON f.customer_id = c.customer_id
LEFT JOIN event_features e ON e.customer_id = c.customer_id
