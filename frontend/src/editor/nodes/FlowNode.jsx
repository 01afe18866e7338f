import { Handle, Position, useUpdateNodeInternals } from '@xyflow/react';
import { memo, useEffect, useRef } from 'react';
import './routeSplit.css';

const ICON = { trigger: '⚡', map: '⇄', filter: '▽', route: '◇', split: '⋔', deliver: '➜' };

/** One canvas node: kind, title, a one-line summary, problem count and test-run status. */
function FlowNode({ id, data, selected }) {
  const { kind, title, subtitle, problems = [], runStatus, hasInput, hasOutput, branches } = data;
  // React Flow draws edges from the handle positions it measured, and re-measures only when
  // the node's size changes: a renamed route case (same size, new handle id) would lose its
  // edge. So say when the set of handles changes.
  const updateNodeInternals = useUpdateNodeInternals();
  const handles = `${hasInput}|${hasOutput}|${(branches ?? []).join('\u0000')}`;
  const measuredHandles = useRef(handles);
  useEffect(() => {
    if (measuredHandles.current === handles) return;
    measuredHandles.current = handles;
    updateNodeInternals(id);
  }, [id, handles, updateNodeInternals]);
  const failed = runStatus === 'failed';
  const classes = ['fg-node', `fg-node-${kind}`];
  if (selected) classes.push('is-selected');
  if (problems.length) classes.push('has-problems');
  if (failed) classes.push('run-failed');
  else if (runStatus) classes.push(`run-${runStatus}`);
  return (
    <div className={classes.join(' ')} data-testid={`node-${data.id}`}>
      {hasInput && <Handle type="target" position={Position.Left} aria-label={`Input of ${title}`} />}
      <div className="fg-node-head">
        <span className="fg-node-icon" aria-hidden="true">{ICON[kind] ?? '•'}</span>
        <span className="fg-node-kind">{data.kindLabel}</span>
        {problems.length > 0 && (
          <span className="fg-node-problems" title={problems.map((p) => p.message).join('\n')}
            aria-label={`${problems.length} problem${problems.length === 1 ? '' : 's'}`}>
            {problems.length}
          </span>
        )}
        {runStatus && (
          <span className={`fg-node-run fg-run-${runStatus}`} aria-label={`Test run: ${runStatus}`}>
            {runStatus}
          </span>
        )}
      </div>
      <div className="fg-node-title">{title}</div>
      {subtitle && <div className="fg-node-sub">{subtitle}</div>}
      {problems.length > 0 && <div className="fg-node-problem-text">{problems[0].message}</div>}
      {branches ? (
        // A route: one output per case (and 'otherwise'); dragging from one names that case.
        <ul className="fg-node-branches" aria-label={`Branches of ${title}`}>
          {branches.map((branch) => (
            <li key={branch} className="fg-node-branch" data-branch={branch}>
              <span className="fg-node-branch-name">{branch}</span>
              <Handle type="source" position={Position.Right} id={branch}
                aria-label={`Branch ${branch} of ${title}`} />
            </li>
          ))}
        </ul>
      ) : hasOutput && <Handle type="source" position={Position.Right} aria-label={`Output of ${title}`} />}
    </div>
  );
}

export default memo(FlowNode);
