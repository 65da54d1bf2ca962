-- Repeat-purchase rate by acquisition channel and signup month.
WITH per_customer AS (
    SELECT c.customer_id, c.acquisition_channel, date_trunc('month', CAST(c.signup_date AS TIMESTAMP)) AS signup_month,
           count(o.order_id) AS orders
    FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id
    GROUP BY c.customer_id, c.acquisition_channel, c.signup_date
)
SELECT acquisition_channel, signup_month, count(*) AS customers,
       CAST(sum(CASE WHEN orders >= 2 THEN 1 ELSE 0 END) AS DOUBLE)
           / nullif(sum(CASE WHEN orders >= 1 THEN 1 ELSE 0 END), 0) AS repeat_rate
FROM per_customer GROUP BY acquisition_channel, signup_month
