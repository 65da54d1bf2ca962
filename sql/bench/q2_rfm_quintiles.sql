-- RFM quintile scores and the number of customers in each (r, f, m) cell.
WITH per_customer AS (
    SELECT customer_id, count(*) AS frequency, max(order_time) AS last_order, sum(amount) AS monetary
    FROM orders GROUP BY customer_id
),
scored AS (
    SELECT customer_id,
           ntile(5) OVER (ORDER BY last_order) AS r_score,
           ntile(5) OVER (ORDER BY frequency) AS f_score,
           ntile(5) OVER (ORDER BY monetary) AS m_score
    FROM per_customer
)
SELECT r_score, f_score, m_score, count(*) AS customers
FROM scored GROUP BY r_score, f_score, m_score
