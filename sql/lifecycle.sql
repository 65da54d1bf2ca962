-- Lifecycle views over the demo world (tenure demo). They read only the public tables
-- customers, items, events, orders and order_lines, so they work on any data with those
-- columns. The observation end is the time of the last order in the data.

-- RFM per customer: recency (days since the last order at the observation end), frequency
-- (orders), monetary (mean and total order value), and quintile scores 1-5 where 5 is best
-- (most recent, most frequent, highest spend).
CREATE OR REPLACE VIEW rfm AS
WITH bounds AS (
    SELECT max(order_time) AS observation_end FROM orders
),
per_customer AS (
    SELECT customer_id,
           count(*) AS frequency,
           min(order_time) AS first_order,
           max(order_time) AS last_order,
           sum(amount) AS monetary_total,
           avg(amount) AS monetary
    FROM orders
    GROUP BY customer_id
)
SELECT p.customer_id,
       CAST(floor((extract(epoch FROM b.observation_end) - extract(epoch FROM p.last_order)) / 86400) AS BIGINT)
           AS recency_days,
       p.frequency,
       round(p.monetary, 2) AS monetary,
       round(p.monetary_total, 2) AS monetary_total,
       p.first_order,
       p.last_order,
       ntile(5) OVER (ORDER BY p.last_order) AS r_score,
       ntile(5) OVER (ORDER BY p.frequency) AS f_score,
       ntile(5) OVER (ORDER BY p.monetary_total) AS m_score
FROM per_customer p CROSS JOIN bounds b;

-- Monthly cohort retention: customers grouped by the month of their first order; for each
-- later month, how many of them ordered and what share of the cohort that is.
CREATE OR REPLACE VIEW cohort_retention AS
WITH firsts AS (
    SELECT customer_id, date_trunc('month', min(order_time)) AS cohort_month
    FROM orders
    GROUP BY customer_id
),
activity AS (
    SELECT DISTINCT o.customer_id,
           f.cohort_month,
           CAST((date_part('year', o.order_time) - date_part('year', f.cohort_month)) * 12
                + date_part('month', o.order_time) - date_part('month', f.cohort_month) AS INT)
               AS months_since_first
    FROM orders o JOIN firsts f ON o.customer_id = f.customer_id
),
sizes AS (
    SELECT cohort_month, count(*) AS cohort_size FROM firsts GROUP BY cohort_month
)
SELECT a.cohort_month,
       a.months_since_first,
       count(*) AS active_customers,
       s.cohort_size,
       round(CAST(count(*) AS DOUBLE) / s.cohort_size, 4) AS retention
FROM activity a JOIN sizes s ON a.cohort_month = s.cohort_month
GROUP BY a.cohort_month, a.months_since_first, s.cohort_size;

-- The view -> add to cart -> purchase funnel by month, over browsing sessions: how many
-- sessions reached each step and the conversion between steps.
CREATE OR REPLACE VIEW funnel AS
WITH sessions AS (
    SELECT customer_id,
           session_id,
           date_trunc('month', min(event_time)) AS month,
           max(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END) AS viewed,
           max(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carted,
           max(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased
    FROM events
    GROUP BY customer_id, session_id
)
SELECT month,
       count(*) AS sessions,
       sum(viewed) AS view_sessions,
       sum(carted) AS cart_sessions,
       sum(purchased) AS purchase_sessions,
       round(CAST(sum(carted) AS DOUBLE) / nullif(sum(viewed), 0), 4) AS view_to_cart,
       round(CAST(sum(purchased) AS DOUBLE) / nullif(sum(carted), 0), 4) AS cart_to_purchase,
       round(CAST(sum(purchased) AS DOUBLE) / nullif(sum(viewed), 0), 4) AS view_to_purchase
FROM sessions
GROUP BY month;

-- Repeat-purchase rate by signup month and acquisition channel: of the customers who bought
-- at least once, the share who bought again.
CREATE OR REPLACE VIEW repeat_purchase_rate AS
WITH per_customer AS (
    SELECT c.customer_id,
           c.acquisition_channel,
           date_trunc('month', CAST(c.signup_date AS TIMESTAMP)) AS signup_month,
           count(o.order_id) AS orders
    FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id
    GROUP BY c.customer_id, c.acquisition_channel, c.signup_date
)
SELECT signup_month,
       acquisition_channel,
       count(*) AS customers,
       sum(CASE WHEN orders >= 1 THEN 1 ELSE 0 END) AS buyers,
       sum(CASE WHEN orders >= 2 THEN 1 ELSE 0 END) AS repeat_buyers,
       round(CAST(sum(CASE WHEN orders >= 2 THEN 1 ELSE 0 END) AS DOUBLE)
             / nullif(sum(CASE WHEN orders >= 1 THEN 1 ELSE 0 END), 0), 4) AS repeat_rate
FROM per_customer
GROUP BY signup_month, acquisition_channel;
