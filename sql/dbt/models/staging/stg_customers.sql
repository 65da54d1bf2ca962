select
    customer_id,
    signup_date,
    acquisition_channel,
    country,
    device
from {{ source('demo', 'customers') }}
