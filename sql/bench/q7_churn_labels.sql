-- Churn labels: customers who ordered before the cutoff (90 days before the last order in
-- the data) and did not order after it.
WITH bounds AS (SELECT max(order_time) - INTERVAL '90 days' AS cutoff FROM orders)
SELECT o.customer_id,
       max(CASE WHEN o.order_time > b.cutoff THEN 1 ELSE 0 END) = 0 AS churned
FROM orders o CROSS JOIN bounds b
GROUP BY o.customer_id
HAVING min(o.order_time) <= min(b.cutoff)
