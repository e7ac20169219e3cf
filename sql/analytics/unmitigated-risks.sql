-- High and critical risks with no mitigation, critical first, with their
-- owners ('(unowned)' where the document names none).
SELECT
    r.severity,
    r.title,
    coalesce(nullif(trim(r.owner), ''), '(unowned)') AS owner,
    r.category,
    d.title AS document,
    d.tenant,
    r.doc_id
FROM risks r
JOIN current_documents d ON r.doc_id = d.doc_id AND r.content_hash = d.content_hash
WHERE r.severity IN ('high', 'critical')
  AND (r.mitigation IS NULL OR trim(r.mitigation) = '')
ORDER BY CASE r.severity WHEN 'critical' THEN 0 ELSE 1 END, owner, r.title
