-- Document versions ingested per day and tenant, with their chunks and
-- tokens.
WITH chunk_counts AS (
    SELECT doc_id, content_hash, count(*) AS chunks
    FROM chunks
    GROUP BY doc_id, content_hash
)
SELECT
    CAST(date_trunc('day', d.ingested_at) AS DATE) AS day,
    d.tenant,
    count(*) AS versions,
    count(DISTINCT d.doc_id) AS documents,
    sum(coalesce(c.chunks, 0)) AS chunks,
    sum(d.n_tokens) AS tokens
FROM documents d
LEFT JOIN chunk_counts c ON d.doc_id = c.doc_id AND d.content_hash = c.content_hash
GROUP BY 1, 2
ORDER BY 1, 2
