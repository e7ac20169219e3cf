-- Action items due from today through the next 14 days, soonest first.
SELECT
    a.due_date,
    a.priority,
    a.task,
    coalesce(nullif(trim(a.owner), ''), '(unowned)') AS owner,
    d.title AS document,
    d.tenant,
    a.doc_id
FROM action_items a
JOIN current_documents d ON a.doc_id = d.doc_id AND a.content_hash = d.content_hash
WHERE a.due_date >= current_date()
  AND a.due_date <= current_date() + INTERVAL '14 days'
ORDER BY
    a.due_date,
    CASE a.priority WHEN 'high' THEN 0 WHEN 'medium' THEN 1 ELSE 2 END,
    a.task
