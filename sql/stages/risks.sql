-- One row per risk the model finds in a document version.
SELECT
    doc_id,
    content_hash,
    r['model'] AS model,
    r['title'] AS title,
    r['description'] AS description,
    r['category'] AS category,
    r['severity'] AS severity,
    r['likelihood'] AS likelihood,
    r['mitigation'] AS mitigation,
    r['owner'] AS owner,
    r['evidence'] AS evidence
FROM (
    SELECT doc_id, content_hash, unnest(risks) AS r
    FROM (SELECT doc_id, content_hash, extract_risks(redact_pii(text)) AS risks FROM extracted)
)
