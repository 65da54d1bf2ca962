-- Monthly cohort retention: share of each first-order cohort active N months later.
WITH firsts AS (
    SELECT customer_id, date_trunc('month', min(order_time)) AS cohort_month
    FROM orders GROUP BY customer_id
),
activity AS (
    SELECT DISTINCT o.customer_id, f.cohort_month,
           CAST((date_part('year', o.order_time) - date_part('year', f.cohort_month)) * 12
                + date_part('month', o.order_time) - date_part('month', f.cohort_month) AS INT) AS months_since_first
    FROM orders o JOIN firsts f ON o.customer_id = f.customer_id
),
sizes AS (SELECT cohort_month, count(*) AS cohort_size FROM firsts GROUP BY cohort_month)
SELECT a.cohort_month, a.months_since_first, count(*) AS active,
       CAST(count(*) AS DOUBLE) / max(s.cohort_size) AS retention
FROM activity a JOIN sizes s ON a.cohort_month = s.cohort_month
GROUP BY a.cohort_month, a.months_since_first
