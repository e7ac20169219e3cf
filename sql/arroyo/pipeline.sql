-- docstream's document pipeline in Arroyo's SQL dialect: Kafka document events
-- → chunks → embeddings, plus summaries, risks and action items, into the same Delta tables
-- (paths and columns) that docstream writes. `docstream arroyo deploy` fills in
-- the placeholders and posts this with the UDFs in udfs/arroyo/.
-- Differences from docstream's own workers are listed in sql/arroyo/README.md.

CREATE TABLE document_events (
    op TEXT,
    doc_id TEXT,
    source_uri TEXT,
    tenant TEXT,
    event_time TEXT,
    title TEXT,
    text TEXT,
    mime TEXT
) WITH (
    connector = 'kafka',
    type = 'source',
    format = 'json',
    bootstrap_servers = '${brokers}',
    topic = '${topic}',
    'source.offset' = 'earliest',
    'source.group_id' = '${group}',
    bad_data = 'drop'
);

-- Upserts with inline text; docstream's workers handle object references,
-- binary formats and deletes.
CREATE VIEW docs AS
SELECT
    coalesce(doc_id, substr(encode(sha256(source_uri), 'hex'), 1, 32)) AS doc_id,
    coalesce(tenant, '${tenant}') AS tenant,
    source_uri,
    encode(sha256(text), 'hex') AS content_hash,
    coalesce(mime, 'text/plain') AS mime,
    title,
    text,
    CAST(event_time AS TIMESTAMP) AS event_time,
    -- Arroyo's event time: the Kafka record's timestamp.
    _timestamp AS ingested_at
FROM document_events
WHERE coalesce(op, 'upsert') = 'upsert' AND text IS NOT NULL AND source_uri IS NOT NULL;

CREATE TABLE documents (
    doc_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    source_uri TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    mime TEXT NOT NULL,
    title TEXT,
    n_chars BIGINT NOT NULL,
    n_tokens BIGINT NOT NULL,
    event_time TIMESTAMP,
    ingested_at TIMESTAMP NOT NULL,
    metadata TEXT,
    parent_doc_id TEXT,
    stage_fingerprint TEXT
) WITH (
    connector = 'delta',
    type = 'sink',
    format = 'parquet',
    path = '${lake}/documents',
    ${storage}
    'rolling_policy.interval' = interval '${roll_seconds} seconds'
);

CREATE TABLE chunks (
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_idx INT NOT NULL,
    text TEXT NOT NULL,
    n_tokens INT NOT NULL,
    char_start BIGINT NOT NULL,
    char_end BIGINT NOT NULL,
    page_start INT,
    page_end INT,
    stage_fingerprint TEXT
) WITH (
    connector = 'delta',
    type = 'sink',
    format = 'parquet',
    path = '${lake}/chunks',
    ${storage}
    'rolling_policy.interval' = interval '${roll_seconds} seconds'
);

CREATE TABLE embeddings (
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunk_idx INT NOT NULL,
    model TEXT NOT NULL,
    dims INT NOT NULL,
    embedding FLOAT[] NOT NULL,
    stage_fingerprint TEXT
) WITH (
    connector = 'delta',
    type = 'sink',
    format = 'parquet',
    path = '${lake}/embeddings',
    ${storage}
    'rolling_policy.interval' = interval '${roll_seconds} seconds'
);

CREATE TABLE summaries (
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    summary TEXT NOT NULL,
    key_points TEXT[] NOT NULL,
    stage_fingerprint TEXT
) WITH (
    connector = 'delta',
    type = 'sink',
    format = 'parquet',
    path = '${lake}/summaries',
    ${storage}
    'rolling_policy.interval' = interval '${roll_seconds} seconds'
);

CREATE TABLE risks (
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT,
    category TEXT NOT NULL,
    severity TEXT NOT NULL,
    likelihood TEXT NOT NULL,
    mitigation TEXT,
    owner TEXT,
    evidence TEXT,
    stage_fingerprint TEXT
) WITH (
    connector = 'delta',
    type = 'sink',
    format = 'parquet',
    path = '${lake}/risks',
    ${storage}
    'rolling_policy.interval' = interval '${roll_seconds} seconds'
);

CREATE TABLE action_items (
    doc_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    owner TEXT,
    due_date DATE,
    priority TEXT NOT NULL,
    evidence TEXT,
    stage_fingerprint TEXT
) WITH (
    connector = 'delta',
    type = 'sink',
    format = 'parquet',
    path = '${lake}/action_items',
    ${storage}
    'rolling_policy.interval' = interval '${roll_seconds} seconds'
);

INSERT INTO documents
SELECT doc_id, tenant, source_uri, content_hash, mime, title,
       CAST(character_length(text) AS BIGINT) AS n_chars,
       count_tokens(text, '${encoding}') AS n_tokens,
       event_time,
       ingested_at,
       CAST(NULL AS TEXT) AS metadata,
       -- Events carry text, not containers: no children here.
       CAST(NULL AS TEXT) AS parent_doc_id,
       CAST(NULL AS TEXT) AS stage_fingerprint
FROM docs;

-- chunk_text returns the chunks as one JSON array; one row per element.
CREATE VIEW chunk_rows AS
SELECT doc_id, content_hash, c
FROM (
    SELECT doc_id, content_hash,
           unnest(extract_json(chunk_text(text, ${max_tokens}, ${overlap}, '${encoding}'), '$[*]')) AS c
    FROM docs
);

CREATE VIEW chunk_values AS
SELECT doc_id, content_hash,
       CAST(get_first_json_object(c, '$.idx') AS INT) AS chunk_idx,
       extract_json_string(c, '$.text') AS text,
       CAST(get_first_json_object(c, '$.n_tokens') AS INT) AS n_tokens,
       CAST(get_first_json_object(c, '$.char_start') AS BIGINT) AS char_start,
       CAST(get_first_json_object(c, '$.char_end') AS BIGINT) AS char_end,
       CAST(get_first_json_object(c, '$.page_start') AS INT) AS page_start,
       CAST(get_first_json_object(c, '$.page_end') AS INT) AS page_end
FROM chunk_rows;

INSERT INTO chunks SELECT *, CAST(NULL AS TEXT) AS stage_fingerprint FROM chunk_values;

-- embed returns a JSON array of floats, NULL when the model failed on the row.
INSERT INTO embeddings
SELECT doc_id, content_hash, chunk_idx, '${embed_model}' AS model,
       CAST(array_length(v) AS INT) AS dims, v AS embedding,
       CAST(NULL AS TEXT) AS stage_fingerprint
FROM (
    SELECT doc_id, content_hash, chunk_idx,
           CAST(extract_json(e, '$[*]') AS FLOAT[]) AS v
    FROM (SELECT doc_id, content_hash, chunk_idx, embed(redact_pii(text)) AS e FROM chunk_values)
    WHERE e IS NOT NULL
);

INSERT INTO summaries
SELECT doc_id, content_hash, '${chat_model}' AS model, 'summary-v1' AS prompt_version,
       extract_json_string(s, '$.summary') AS summary,
       extract_json(s, '$.key_points[*]') AS key_points,
       CAST(NULL AS TEXT) AS stage_fingerprint
FROM (SELECT doc_id, content_hash, summarize(redact_pii(text)) AS s FROM docs)
WHERE s IS NOT NULL;

INSERT INTO risks
SELECT doc_id, content_hash, '${chat_model}' AS model,
       extract_json_string(r, '$.title') AS title,
       extract_json_string(r, '$.description') AS description,
       extract_json_string(r, '$.category') AS category,
       extract_json_string(r, '$.severity') AS severity,
       extract_json_string(r, '$.likelihood') AS likelihood,
       extract_json_string(r, '$.mitigation') AS mitigation,
       extract_json_string(r, '$.owner') AS owner,
       extract_json_string(r, '$.evidence') AS evidence,
       CAST(NULL AS TEXT) AS stage_fingerprint
FROM (
    SELECT doc_id, content_hash,
           unnest(extract_json(extract_risks(redact_pii(text)), '$.risks[*]')) AS r
    FROM docs
);

INSERT INTO action_items
SELECT doc_id, content_hash, '${chat_model}' AS model,
       extract_json_string(a, '$.task') AS task,
       extract_json_string(a, '$.owner') AS owner,
       CAST(extract_json_string(a, '$.due_date') AS DATE) AS due_date,
       extract_json_string(a, '$.priority') AS priority,
       extract_json_string(a, '$.evidence') AS evidence,
       CAST(NULL AS TEXT) AS stage_fingerprint
FROM (
    SELECT doc_id, content_hash,
           unnest(extract_json(extract_action_items(redact_pii(text)), '$.action_items[*]')) AS a
    FROM docs
);
