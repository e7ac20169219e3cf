-- Model requests, tokens and estimated cost per tenant, model and day.
-- Cost comes from the providers' price_input_per_1m / price_output_per_1m;
-- local models cost 0.
SELECT
    CAST(date_trunc('day', recorded_at) AS DATE) AS day,
    coalesce(tenant, '(unknown)') AS tenant,
    provider,
    model,
    sum(requests) AS requests,
    sum(inputs) AS inputs,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    round(sum(est_cost_usd), 6) AS est_cost_usd,
    sum(CASE WHEN status = 'ok' THEN 0 ELSE 1 END) AS failed_batches
FROM usage
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
