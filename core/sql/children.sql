-- The child runs a run's `subflow` nodes wait for (cancelling a run cancels them). $1 run id.
SELECT {child_run_id(n)} FROM {nodes} n WHERE n.run_id = $1 AND n.state = 'subflow'
