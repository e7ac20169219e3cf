-- One row per task the model finds in a document version.
SELECT
    doc_id,
    content_hash,
    a['model'] AS model,
    a['task'] AS task,
    a['owner'] AS owner,
    TRY_CAST(a['due_date'] AS DATE) AS due_date,
    a['priority'] AS priority,
    a['evidence'] AS evidence
FROM (
    SELECT doc_id, content_hash, unnest(items) AS a
    FROM (SELECT doc_id, content_hash, extract_action_items(redact_pii(text)) AS items FROM extracted)
)
