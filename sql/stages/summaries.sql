-- One summary per document version. Long documents are summarized
-- map-reduce inside summarize().
SELECT
    doc_id,
    content_hash,
    s['model'] AS model,
    s['prompt_version'] AS prompt_version,
    s['summary'] AS summary,
    s['key_points'] AS key_points
FROM (SELECT doc_id, content_hash, summarize(redact_pii(text)) AS s FROM extracted)
