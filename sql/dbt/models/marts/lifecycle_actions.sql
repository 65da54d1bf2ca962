-- The lifecycle mart (scored at query time by tenure's models) joined to the marketing
-- playbook seed: what to do next for every customer, most urgent first.
select
    l.customer_id,
    l.lifecycle_stage,
    l.p_alive,
    l.churn_score,
    l.clv_12_months,
    p.action,
    p.priority,
    p.max_discount_percent
from {{ source('demo', 'customer_lifecycle') }} l
join {{ ref('stage_playbook') }} p on p.lifecycle_stage = l.lifecycle_stage
