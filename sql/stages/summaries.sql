-- One summary and document type per document version. Long documents are
-- summarized map-reduce inside summarize().
SELECT
    doc_id,
    content_hash,
    s['model'] AS model,
    s['prompt_version'] AS prompt_version,
    s['summary'] AS summary,
    s['key_points'] AS key_points,
    c['doc_type'] AS doc_type,
    c['confidence'] AS doc_type_confidence
FROM (
    SELECT doc_id, content_hash,
           summarize(redact_pii(text)) AS s,
           classify_document(redact_pii(text), '${labels}') AS c
    FROM extracted
)
