select
    order_month,
    count(*) as orders,
    count(distinct customer_id) as customers,
    sum(net_amount) as net_revenue
from {{ ref('stg_orders') }}
group by order_month
