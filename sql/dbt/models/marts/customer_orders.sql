-- Per customer: orders, revenue, first and last order. Customers without orders are kept.
select
    c.customer_id,
    c.acquisition_channel,
    count(o.order_id) as orders,
    coalesce(sum(o.net_amount), 0) as net_revenue,
    min(o.order_time) as first_order_time,
    max(o.order_time) as last_order_time
from {{ ref('stg_customers') }} c
left join {{ ref('stg_orders') }} o on o.customer_id = c.customer_id
group by c.customer_id, c.acquisition_channel
