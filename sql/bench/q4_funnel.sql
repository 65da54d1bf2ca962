-- View -> add to cart -> purchase funnel by month over sessions.
WITH sessions AS (
    SELECT customer_id, session_id, date_trunc('month', min(event_time)) AS month,
           max(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS viewed,
           max(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carted,
           max(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased
    FROM events GROUP BY customer_id, session_id
)
SELECT month, count(*) AS sessions, sum(viewed) AS viewed, sum(carted) AS carted, sum(purchased) AS purchased,
       CAST(sum(purchased) AS DOUBLE) / nullif(sum(viewed), 0) AS conversion
FROM sessions GROUP BY month
