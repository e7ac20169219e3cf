-- One vector per chunk. `chunks` is this batch's output of the chunks stage.
-- The endpoint sees the chunk with emails, phone numbers and card numbers
-- masked, like every other model stage; `chunks.text` keeps the original.
SELECT
    doc_id,
    content_hash,
    chunk_idx,
    '${model}' AS model,
    CAST(array_length(e) AS INT) AS dims,
    e AS embedding
FROM (SELECT doc_id, content_hash, chunk_idx, embed(redact_pii(text)) AS e FROM chunks)
