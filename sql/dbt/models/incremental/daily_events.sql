-- delete+insert strategy: each run recomputes the days from the newest one already counted
-- (which may have gained events since) and replaces those days' rows.
{{ config(materialized='incremental', unique_key='event_date', incremental_strategy='delete+insert') }}
select
    cast(event_time as date) as event_date,
    count(*) as events,
    count(distinct customer_id) as customers
from {{ source('demo', 'events') }}
{% if is_incremental() %}
where cast(event_time as date) >= (select max(event_date) from {{ this }})
{% endif %}
group by cast(event_time as date)
