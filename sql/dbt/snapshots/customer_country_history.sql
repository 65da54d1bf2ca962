{#- A type-2 history of each customer's country and device (dbt's check strategy): a
    changed row is closed (dbt_valid_to) and a new version opened, through dbt-postgres's
    temporary staging table, UPDATE ... FROM and INSERT. -#}
{% snapshot customer_country_history %}
{{ config(target_schema='snapshots', unique_key='customer_id', strategy='check',
          check_cols=['country', 'device']) }}
select customer_id, country, device from {{ source('demo', 'customers') }}
{% endsnapshot %}
