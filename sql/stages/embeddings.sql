-- One vector per chunk. `chunks` is this batch's output of the chunks stage.
SELECT
    doc_id,
    content_hash,
    chunk_idx,
    '${model}' AS model,
    CAST(array_length(e) AS INT) AS dims,
    e AS embedding
FROM (SELECT doc_id, content_hash, chunk_idx, embed(text) AS e FROM chunks)
