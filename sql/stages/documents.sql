-- One row per document version. The extracted text itself lives in `chunks`.
SELECT
    doc_id,
    tenant,
    source_uri,
    content_hash,
    mime,
    title,
    n_chars,
    count_tokens(text, '${encoding}') AS n_tokens,
    event_time,
    ingested_at,
    metadata,
    parent_doc_id
FROM extracted
