{{ config(materialized='view') }}
select
    lifecycle_stage,
    count(*) as customers,
    avg(churn_score) as mean_churn_score,
    sum(clv_12_months) as clv_12_months
from {{ ref('lifecycle_actions') }}
group by lifecycle_stage
