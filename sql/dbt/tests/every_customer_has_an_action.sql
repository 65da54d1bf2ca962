-- A singular test: every customer of the demo world gets exactly one action.
select c.customer_id
from {{ ref('stg_customers') }} c
left join {{ ref('lifecycle_actions') }} a on a.customer_id = c.customer_id
where a.customer_id is null
