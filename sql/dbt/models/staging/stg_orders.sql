-- One row per order with its calendar month and net amount.
select
    order_id,
    customer_id,
    order_time,
    date_trunc('month', order_time) as order_month,
    amount,
    discount,
    amount - discount as net_amount,
    payment_method,
    item_count,
    shipping_country
from {{ source('demo', 'orders') }}
