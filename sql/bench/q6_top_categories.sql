-- The three categories with the highest revenue in each month.
WITH revenue AS (
    SELECT date_trunc('month', o.order_time) AS month, i.category,
           sum(l.quantity * l.unit_price) AS revenue
    FROM order_lines l
    JOIN orders o ON o.order_id = l.order_id
    JOIN items i ON i.item_id = l.item_id
    GROUP BY date_trunc('month', o.order_time), i.category
),
ranked AS (
    SELECT month, category, revenue,
           row_number() OVER (PARTITION BY month ORDER BY revenue DESC) AS rank
    FROM revenue
)
SELECT month, category, revenue, rank FROM ranked WHERE rank <= 3
