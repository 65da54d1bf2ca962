-- Churn from event histories against tabular churn models, on the same customers: README's
-- "Behaviour sequences" comparison at the default sequence configuration. On a demo world:
--   tenure demo --scale 0.2 && tenure sql -f benches/sequence_quality.sql
-- Each model trains on the customers whose id is not a multiple of 5 and is judged on the
-- others. Training queries are ordered: the validation split follows row order.

CREATE OR REPLACE MODEL q_transformer KIND sequence TARGET churned
OPTIONS (task = 'churn', architecture = 'transformer', epochs = 8, patience = 2, seed = 1)
AS SELECT s.events, s.ages, f.churned
   FROM customer_event_sequences s JOIN churn_features f USING (customer_id)
   WHERE s.customer_id % 5 <> 0 ORDER BY s.customer_id;

CREATE OR REPLACE MODEL q_lstm KIND sequence TARGET churned
OPTIONS (task = 'churn', architecture = 'lstm', epochs = 8, patience = 2, seed = 1)
AS SELECT s.events, s.ages, f.churned
   FROM customer_event_sequences s JOIN churn_features f USING (customer_id)
   WHERE s.customer_id % 5 <> 0 ORDER BY s.customer_id;

-- Per-customer aggregates that do not see the order of events.
CREATE OR REPLACE MODEL q_aggregates KIND churn_classifier TARGET churned
OPTIONS (hidden = '32,16', epochs = 40, seed = 1)
AS SELECT recency_days, frequency, tenure_days, account_age_days, avg_amount, browse_sessions,
          events_per_session, reviews, acquisition_channel, device, churned
   FROM churn_features WHERE customer_id % 5 <> 0 ORDER BY customer_id;

-- Every churn_features column, including the hand-built order-aware ones.
CREATE OR REPLACE MODEL q_engineered KIND churn_classifier TARGET churned
OPTIONS (hidden = '32,16', epochs = 40, seed = 1)
AS SELECT recency_days, frequency, tenure_days, account_age_days, avg_amount, browse_sessions,
          sessions_since_last_order, visit_days_since_last_order, days_since_last_visit,
          events_per_session, reviews, abandoned_carts_before_last_order,
          failed_searches_before_last_order, last_order_rating, acquisition_channel, device,
          churned
   FROM churn_features WHERE customer_id % 5 <> 0 ORDER BY customer_id;

SELECT 'transformer' AS model, value AS held_out_roc_auc FROM model_evaluate('q_transformer',
    'SELECT s.events, s.ages, f.churned FROM customer_event_sequences s JOIN churn_features f USING (customer_id) WHERE s.customer_id % 5 = 0')
WHERE metric = 'roc_auc'
UNION ALL
SELECT 'lstm', value FROM model_evaluate('q_lstm',
    'SELECT s.events, s.ages, f.churned FROM customer_event_sequences s JOIN churn_features f USING (customer_id) WHERE s.customer_id % 5 = 0')
WHERE metric = 'roc_auc'
UNION ALL
SELECT 'aggregates', value FROM model_evaluate('q_aggregates',
    'SELECT * FROM churn_features WHERE customer_id % 5 = 0') WHERE metric = 'roc_auc'
UNION ALL
SELECT 'engineered', value FROM model_evaluate('q_engineered',
    'SELECT * FROM churn_features WHERE customer_id % 5 = 0') WHERE metric = 'roc_auc';
