-- Failures by stage and error kind, and the share of all documents seen
-- (landed or failed) they hit.
WITH seen AS (
    SELECT doc_id FROM documents
    UNION
    SELECT doc_id FROM failures
),
total AS (SELECT count(*) AS documents FROM seen)
SELECT
    f.stage,
    f.error_kind,
    count(*) AS failures,
    count(DISTINCT f.doc_id) AS documents,
    round(100.0 * count(DISTINCT f.doc_id) / max(t.documents), 2) AS pct_of_documents
FROM failures f
CROSS JOIN total t
GROUP BY f.stage, f.error_kind
ORDER BY failures DESC, f.stage, f.error_kind
