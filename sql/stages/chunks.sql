-- Token-bounded chunks, cut at paragraph, then sentence, then word boundaries.
SELECT
    doc_id,
    content_hash,
    c['idx'] AS chunk_idx,
    c['text'] AS text,
    c['n_tokens'] AS n_tokens,
    c['char_start'] AS char_start,
    c['char_end'] AS char_end,
    c['page_start'] AS page_start,
    c['page_end'] AS page_end
FROM (
    SELECT doc_id, content_hash,
           unnest(chunk_text(text, ${max_tokens}, ${overlap}, '${encoding}')) AS c
    FROM extracted
)
