-- The customer lifecycle mart: one row per customer of the demo world with RFM, BG/NBD
-- P(alive) and expected purchases, 12-month CLV, segment, churn score, order risk,
-- lifecycle stage, the win-back coupon's uplift and the next best action. It trains the
-- models it needs (each run adds a new version of each) and then creates the view
-- customer_lifecycle, which scores with them at query time.
--
--   tenure demo && tenure sql -f sql/lifecycle_mart.sql
--   tenure sql -c "SELECT lifecycle_stage, count(*), avg(clv_12_months) FROM customer_lifecycle GROUP BY 1"
--
-- It reads the views of sql/lifecycle.sql (rfm, churn_features, order_risk_features) and a
-- campaign's results (winback_campaign), so it works on any data those work on; the
-- observation end below is the demo world's.

-- Frequency, recency and T in weeks up to the end of the data.
CREATE OR REPLACE TABLE lifecycle_rfm_weeks AS
SELECT * FROM rfm_summary('SELECT customer_id, order_time, amount FROM orders', '2025-12-31', 'week');

CREATE OR REPLACE MODEL lifecycle_purchases KIND bgnbd
AS SELECT frequency, recency, t FROM lifecycle_rfm_weeks;

CREATE OR REPLACE MODEL lifecycle_spend KIND gamma_gamma
AS SELECT frequency, monetary_value FROM lifecycle_rfm_weeks;

CREATE OR REPLACE MODEL lifecycle_segments KIND kmeans
OPTIONS (k_min = 3, k_max = 6, log = 'frequency, monetary', seed = 1)
AS SELECT recency_days, frequency, monetary FROM rfm ORDER BY customer_id;

CREATE OR REPLACE MODEL lifecycle_churn KIND churn_classifier TARGET churned
OPTIONS (hidden = '32,16', epochs = 20, seed = 1)
AS SELECT recency_days, frequency, tenure_days, avg_amount, sessions_since_last_order,
          days_since_last_visit, abandoned_carts_before_last_order,
          failed_searches_before_last_order, last_order_rating, acquisition_channel, device,
          churned
   FROM churn_features ORDER BY customer_id;

-- The win-back coupon's effect per customer, from the randomised campaign in
-- winback_campaign (customer_id, arm 'coupon' or 'control', retained), features as of the
-- campaign (the churn features' cutoff).
CREATE OR REPLACE MODEL lifecycle_coupon KIND uplift TARGET retained TREATMENT got_coupon
OPTIONS (hidden = '16', seed = 1)
AS SELECT f.recency_days, f.frequency, f.tenure_days, f.avg_amount, f.sessions_since_last_order,
          f.days_since_last_visit, f.abandoned_carts_before_last_order,
          f.failed_searches_before_last_order, f.last_order_rating, f.acquisition_channel, f.device,
          w.arm = 'coupon' AS got_coupon, w.retained
   FROM winback_campaign w JOIN churn_features f USING (customer_id) ORDER BY w.customer_id;

CREATE OR REPLACE MODEL lifecycle_order_risk KIND anomaly OPTIONS (epochs = 10, seed = 1)
AS SELECT amount, discount, item_count, payment_method, ships_abroad, account_age_hours,
          hour_of_day, prior_orders, minutes_since_previous_order, amount_to_previous_mean
   FROM order_risk_features ORDER BY order_id;

CREATE OR REPLACE VIEW customer_lifecycle AS
WITH order_risk AS (
    SELECT customer_id,
           max(risk_score('lifecycle_order_risk', amount, discount, item_count, payment_method,
                          ships_abroad, account_age_hours, hour_of_day, prior_orders,
                          minutes_since_previous_order, amount_to_previous_mean)) AS max_order_risk
    FROM order_risk_features GROUP BY customer_id
),
scored AS (
SELECT c.customer_id,
       c.signup_date,
       coalesce(r.frequency, 0) AS orders,
       r.recency_days,
       r.monetary,
       r.monetary_total,
       rfm_segment(r.r_score, r.f_score, r.m_score) AS rfm_segment,
       w.frequency AS repeat_purchases,
       p_alive('lifecycle_purchases', w.frequency, w.recency, w.t) AS p_alive,
       expected_purchases('lifecycle_purchases', 52, w.frequency, w.recency, w.t) AS expected_purchases_52_weeks,
       clv('lifecycle_purchases', 'lifecycle_spend', w.frequency, w.recency, w.t,
           w.monetary_value, 12, 0.01) AS clv_12_months,
       segment('lifecycle_segments', r.recency_days, r.frequency, r.monetary) AS segment,
       segment_name('lifecycle_segments', r.recency_days, r.frequency, r.monetary) AS segment_name,
       churn_score('lifecycle_churn', f.recency_days, f.frequency, f.tenure_days, f.avg_amount,
                   f.sessions_since_last_order, f.days_since_last_visit,
                   f.abandoned_carts_before_last_order, f.failed_searches_before_last_order,
                   f.last_order_rating, f.acquisition_channel, f.device) AS churn_score,
       o.max_order_risk,
       -- Only for customers like the campaign's: at risk (no order in the 30 days before the
       -- cutoff); the model has not seen the others.
       CASE WHEN f.recency_days >= 30 THEN
           uplift_score('lifecycle_coupon', f.recency_days, f.frequency, f.tenure_days,
                        f.avg_amount, f.sessions_since_last_order, f.days_since_last_visit,
                        f.abandoned_carts_before_last_order, f.failed_searches_before_last_order,
                        f.last_order_rating, f.acquisition_channel, f.device)
       END AS coupon_uplift,
       lifecycle_stage(DATE '2025-12-31' - c.signup_date, coalesce(r.frequency, 0), r.recency_days,
                       p_alive('lifecycle_purchases', w.frequency, w.recency, w.t)) AS lifecycle_stage
FROM customers c
LEFT JOIN rfm r ON r.customer_id = c.customer_id
LEFT JOIN lifecycle_rfm_weeks w ON w.customer_id = c.customer_id
LEFT JOIN churn_features f ON f.customer_id = c.customer_id
LEFT JOIN order_risk o ON o.customer_id = c.customer_id
)
-- The next best action by expected value: the coupon keeps coupon_uplift more customers
-- per customer sent, each worth their 12-month CLV, and costs 5 (its discount); sending
-- nothing is worth 0. Customers without an uplift (no order before the campaign's cutoff,
-- or not at risk then) get no_action.
SELECT *,
       coupon_uplift * clv_12_months - 5.0 AS coupon_expected_value,
       CASE WHEN coupon_uplift * clv_12_months - 5.0 > 0 THEN 'winback_coupon' ELSE 'no_action' END
           AS next_best_action
FROM scored;
