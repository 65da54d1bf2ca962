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

-- Churn features as of the demo world's feature cutoff (2025-10-03 00:00): one row per
-- customer who signed up and ordered before it, with only what was known then, and the label
-- churned = no order in the 90 days after. Recency, frequency and tenure; browsing sessions
-- (no purchase, no review) overall and since the last order, with the days from that order
-- to each visit summed (visits that keep coming mean the customer is still around);
-- abandoned carts and failed searches among the last three browsing sessions before the
-- last order; the rating of the last order's review if one arrived. Train and score with:
--   CREATE MODEL churn KIND churn_classifier TARGET churned
--   AS SELECT recency_days, frequency, ..., device, churned FROM churn_features;
--   SELECT customer_id, churn_score('churn', recency_days, frequency, ..., device)
--   FROM churn_features;
CREATE OR REPLACE VIEW churn_features AS
WITH cutoff AS (
    SELECT TIMESTAMP '2025-10-03 00:00:00' AS t
),
history AS (
    SELECT o.customer_id, count(*) AS orders, min(o.order_time) AS first_order,
           max(o.order_time) AS last_order, avg(o.amount) AS avg_amount
    FROM orders o CROSS JOIN cutoff c WHERE o.order_time < c.t GROUP BY o.customer_id
),
later AS (
    SELECT DISTINCT o.customer_id FROM orders o CROSS JOIN cutoff c WHERE o.order_time >= c.t
),
sessions AS (
    SELECT e.customer_id, e.session_id, min(e.event_time) AS started,
           max(CASE WHEN e.event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased,
           max(CASE WHEN e.event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carted,
           max(CASE WHEN e.event_type = 'search' THEN 1 ELSE 0 END) AS searched,
           max(CASE WHEN e.event_type = 'view' THEN 1 ELSE 0 END) AS viewed,
           max(CASE WHEN e.event_type = 'review' THEN 1 ELSE 0 END) AS reviewed,
           count(*) AS events
    FROM events e CROSS JOIN cutoff c WHERE e.event_time < c.t
    GROUP BY e.customer_id, e.session_id
),
browsing AS (
    SELECT s.*, h.last_order,
           row_number() OVER (PARTITION BY s.customer_id ORDER BY s.started DESC) AS recent_rank
    FROM sessions s JOIN history h ON h.customer_id = s.customer_id
    WHERE s.purchased = 0 AND s.reviewed = 0 AND s.started < h.last_order
),
before_last AS (
    SELECT customer_id,
           sum(CASE WHEN carted = 1 THEN 1 ELSE 0 END) AS abandoned_carts_before_last_order,
           sum(CASE WHEN searched = 1 AND viewed = 0 THEN 1 ELSE 0 END) AS failed_searches_before_last_order
    FROM browsing WHERE recent_rank <= 3 GROUP BY customer_id
),
visits AS (
    SELECT s.customer_id,
           count(*) FILTER (WHERE s.purchased = 0 AND s.reviewed = 0) AS browse_sessions,
           count(*) FILTER (WHERE s.started > h.last_order AND s.purchased = 0 AND s.reviewed = 0) AS sessions_since_last_order,
           sum((extract(epoch FROM s.started) - extract(epoch FROM h.last_order)) / 86400)
               FILTER (WHERE s.started > h.last_order AND s.purchased = 0 AND s.reviewed = 0) AS visit_days_since_last_order,
           max(s.started) FILTER (WHERE s.purchased = 0 AND s.reviewed = 0) AS last_visit,
           avg(s.events) AS events_per_session,
           sum(s.reviewed) AS reviews
    FROM sessions s JOIN history h ON h.customer_id = s.customer_id
    GROUP BY s.customer_id
),
ratings AS (
    SELECT e.customer_id, first_value(e.rating ORDER BY e.event_time DESC) AS last_order_rating
    FROM events e JOIN history h ON h.customer_id = e.customer_id CROSS JOIN cutoff c
    WHERE e.event_type = 'review' AND e.event_time > h.last_order AND e.event_time < c.t
    GROUP BY e.customer_id
)
SELECT cu.customer_id,
       (extract(epoch FROM c.t) - extract(epoch FROM h.last_order)) / 86400 AS recency_days,
       h.orders AS frequency,
       (extract(epoch FROM c.t) - extract(epoch FROM h.first_order)) / 86400 AS tenure_days,
       (extract(epoch FROM c.t) - extract(epoch FROM CAST(cu.signup_date AS TIMESTAMP))) / 86400 AS account_age_days,
       h.avg_amount,
       coalesce(v.browse_sessions, 0) AS browse_sessions,
       coalesce(v.sessions_since_last_order, 0) AS sessions_since_last_order,
       coalesce(v.visit_days_since_last_order, 0) AS visit_days_since_last_order,
       (extract(epoch FROM c.t) - extract(epoch FROM v.last_visit)) / 86400 AS days_since_last_visit,
       v.events_per_session,
       coalesce(v.reviews, 0) AS reviews,
       coalesce(b.abandoned_carts_before_last_order, 0) AS abandoned_carts_before_last_order,
       coalesce(b.failed_searches_before_last_order, 0) AS failed_searches_before_last_order,
       r.last_order_rating,
       cu.acquisition_channel,
       cu.device,
       l.customer_id IS NULL AS churned
FROM customers cu
JOIN history h ON h.customer_id = cu.customer_id
LEFT JOIN visits v ON v.customer_id = cu.customer_id
LEFT JOIN before_last b ON b.customer_id = cu.customer_id
LEFT JOIN ratings r ON r.customer_id = cu.customer_id
LEFT JOIN later l ON l.customer_id = cu.customer_id
CROSS JOIN cutoff c
WHERE cu.signup_date <= DATE '2025-10-02';

-- One row per order with what fraud and risk models read: amounts, payment, shipping abroad,
-- account age, the hour, the customer's earlier orders (how many, minutes since the last, this
-- amount against their mean). Reads only orders and customers.
CREATE OR REPLACE VIEW order_risk_features AS
WITH ordered AS (
    SELECT o.order_id, o.customer_id, o.order_time, o.amount, o.discount, o.item_count,
           o.payment_method, o.shipping_country <> c.country AS ships_abroad,
           (extract(epoch FROM o.order_time) - extract(epoch FROM CAST(c.signup_date AS TIMESTAMP))) / 3600 AS account_age_hours,
           extract(hour FROM o.order_time) AS hour_of_day,
           row_number() OVER (PARTITION BY o.customer_id ORDER BY o.order_time, o.order_id) - 1 AS prior_orders,
           lag(o.order_time) OVER (PARTITION BY o.customer_id ORDER BY o.order_time, o.order_id) AS previous_order_time,
           avg(o.amount) OVER (PARTITION BY o.customer_id ORDER BY o.order_time, o.order_id
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_mean_amount
    FROM orders o JOIN customers c ON c.customer_id = o.customer_id
)
SELECT order_id, customer_id, order_time, amount, discount, item_count, payment_method, ships_abroad,
       account_age_hours, hour_of_day, prior_orders,
       (extract(epoch FROM order_time) - extract(epoch FROM previous_order_time)) / 60 AS minutes_since_previous_order,
       amount / previous_mean_amount AS amount_to_previous_mean
FROM ordered;

-- Event histories for KIND sequence, as of the feature cutoff: one row per customer with an
-- event before it. events lists the event types oldest first (a review carries its rating,
-- review_1 .. review_5), ages each event's age in days at the cutoff; both cut at the cutoff
-- like churn_features, so a churn model trains with
--   CREATE MODEL behaviour KIND sequence TARGET churned OPTIONS (task = 'churn')
--   AS SELECT s.events, s.ages, f.churned
--      FROM customer_event_sequences s JOIN churn_features f USING (customer_id);
CREATE OR REPLACE VIEW customer_event_sequences AS
SELECT e.customer_id,
       array_agg(CASE WHEN e.event_type = 'review' THEN 'review_' || CAST(e.rating AS VARCHAR)
                      ELSE e.event_type END
                 ORDER BY e.event_time, e.event_id) AS events,
       array_agg((extract(epoch FROM TIMESTAMP '2025-10-03 00:00:00') - extract(epoch FROM e.event_time)) / 86400
                 ORDER BY e.event_time, e.event_id) AS ages
FROM events e
WHERE e.event_time < TIMESTAMP '2025-10-03 00:00:00'
GROUP BY e.customer_id;

-- Purchase histories for next-item models: per customer every item bought over the whole
-- window, oldest first (order time, then line), as text tokens, with each purchase's age in
-- days at the end of the window.
CREATE OR REPLACE VIEW customer_item_sequences AS
SELECT o.customer_id,
       array_agg(CAST(l.item_id AS VARCHAR) ORDER BY o.order_time, o.order_id, l.line_no) AS items,
       array_agg((extract(epoch FROM TIMESTAMP '2026-01-01 00:00:00') - extract(epoch FROM o.order_time)) / 86400
                 ORDER BY o.order_time, o.order_id, l.line_no) AS ages
FROM orders o JOIN order_lines l ON l.order_id = o.order_id
GROUP BY o.customer_id;
