-- Risks per week of the document's date (event_time, else ingest time),
-- by severity and category, over each document's current version.
SELECT
    CAST(date_trunc('week', coalesce(d.event_time, d.ingested_at)) AS DATE) AS week,
    r.severity,
    r.category,
    count(*) AS risks,
    count(DISTINCT r.doc_id) AS documents
FROM risks r
JOIN current_documents d ON r.doc_id = d.doc_id AND r.content_hash = d.content_hash
GROUP BY 1, 2, 3
ORDER BY
    week,
    CASE r.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
    r.category
