import { useCallback, useRef, useState } from 'react';

const LIMIT = 100;

/**
 * Undo/redo over an immutable value. `set(next, { coalesce })` records a step; with the same
 * `coalesce` key as the previous step (typing in one field) the steps merge into one.
 * `reset(value)` starts over (after loading or reloading from the server).
 */
export function useHistory(initial) {
  const [state, setState] = useState({ past: [], present: initial, future: [] });
  const lastKey = useRef(null);

  const set = useCallback((update, { coalesce = null } = {}) => {
    setState((s) => {
      const next = typeof update === 'function' ? update(s.present) : update;
      if (next === s.present) return s;
      const merge = coalesce !== null && coalesce === lastKey.current && s.past.length > 0;
      lastKey.current = coalesce;
      return {
        past: merge ? s.past : [...s.past, s.present].slice(-LIMIT),
        present: next,
        future: [],
      };
    });
  }, []);

  const undo = useCallback(() => {
    lastKey.current = null;
    setState((s) => (s.past.length === 0 ? s : {
      past: s.past.slice(0, -1),
      present: s.past[s.past.length - 1],
      future: [s.present, ...s.future],
    }));
  }, []);

  const redo = useCallback(() => {
    lastKey.current = null;
    setState((s) => (s.future.length === 0 ? s : {
      past: [...s.past, s.present],
      present: s.future[0],
      future: s.future.slice(1),
    }));
  }, []);

  const reset = useCallback((value) => {
    lastKey.current = null;
    setState({ past: [], present: value, future: [] });
  }, []);

  return {
    value: state.present,
    set,
    undo,
    redo,
    reset,
    canUndo: state.past.length > 0,
    canRedo: state.future.length > 0,
  };
}
