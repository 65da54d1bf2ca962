-- Append strategy: each run adds the events newer than the newest already copied.
{{ config(materialized='incremental') }}
select event_id, customer_id, event_time, event_type
from {{ source('demo', 'events') }}
{% if is_incremental() %}
where event_time > (select max(event_time) from {{ this }})
{% endif %}
