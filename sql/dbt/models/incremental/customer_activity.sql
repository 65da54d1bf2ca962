-- merge strategy (MERGE INTO): each run recomputes the customers with events newer than the
-- newest one seen, updating their rows and inserting new customers.
{{ config(materialized='incremental', unique_key='customer_id', incremental_strategy='merge') }}
select
    customer_id,
    count(*) as events,
    max(event_time) as last_event_time
from {{ source('demo', 'events') }}
{% if is_incremental() %}
where customer_id in (
    select customer_id from {{ source('demo', 'events') }}
    where event_time > (select max(last_event_time) from {{ this }})
)
{% endif %}
group by customer_id
