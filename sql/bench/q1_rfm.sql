-- RFM per customer: recency (days before the last order in the data), frequency, monetary.
WITH bounds AS (SELECT max(order_time) AS observation_end FROM orders)
SELECT o.customer_id,
       floor((extract(epoch FROM max(b.observation_end)) - extract(epoch FROM max(o.order_time))) / 86400) AS recency_days,
       count(*) AS frequency,
       avg(o.amount) AS monetary
FROM orders o CROSS JOIN bounds b
GROUP BY o.customer_id
