-- One document type per document version, from the stage's label set.
SELECT
    doc_id,
    content_hash,
    '${model}' AS model,
    '${labels}' AS labels,
    c['doc_type'] AS doc_type,
    c['confidence'] AS confidence
FROM (
    SELECT doc_id, content_hash, classify_document(redact_pii(text), '${labels}') AS c
    FROM extracted
)
