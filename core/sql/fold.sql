(SELECT COALESCE(jsonb_object_agg(e.k, e.v), '{}'::jsonb)
 FROM (SELECT n.node_id, n.state, n.output, n.bound, n.input, n.iteration FROM {nodes} n
       WHERE n.run_id = $1 AND NOT ({exclude}) FOR SHARE) f,
 LATERAL (SELECT '_outputs.' || f.node_id, f.output WHERE {has_output(f)}
          UNION ALL SELECT f.node_id, f.output WHERE {has_output(f)}
          UNION ALL SELECT '_inputs.' || f.node_id, f.input WHERE f.input IS NOT NULL) e(k, v))
