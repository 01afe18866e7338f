import { useId, useState } from 'react';

// A form generated from a connector's JSON Schema (draft 2020-12 subset): strings, numbers,
// integers, booleans, enums, nested objects; free-form objects and arrays as JSON. Required
// fields, defaults (as placeholders), help text and inline checks come from the schema.
// Secret fields are write-only: never shown, only "stored" or not.

function typeOf(prop) {
  if (prop.enum) return 'enum';
  if (Array.isArray(prop.type)) return prop.type.find((t) => t !== 'null') ?? 'string';
  if (prop.type) return prop.type;
  if (prop.properties) return 'object';
  return 'json';
}

/** Inline messages for one value against its property schema (what the browser can check). */
export function fieldMessages(prop, value, required) {
  const out = [];
  const empty = value === undefined || value === null || value === '';
  if (empty) {
    if (required && prop.default === undefined) out.push('Required.');
    return out;
  }
  const type = typeOf(prop);
  if (type === 'string' && typeof value === 'string') {
    if (prop.minLength && value.length < prop.minLength) out.push(`At least ${prop.minLength} characters.`);
    if (prop.maxLength && value.length > prop.maxLength) out.push(`At most ${prop.maxLength} characters.`);
    if (prop.pattern) {
      let ok = true;
      try {
        ok = new RegExp(prop.pattern, 'u').test(value);
      } catch {
        ok = true; // a pattern the browser cannot compile is checked by the server
      }
      if (!ok) out.push(`Value ${prop.errorMessage?.pattern ?? 'has the wrong format'}.`);
    }
  }
  if ((type === 'integer' || type === 'number') && typeof value === 'number') {
    if (prop.minimum !== undefined && value < prop.minimum) out.push(`At least ${prop.minimum}.`);
    if (prop.maximum !== undefined && value > prop.maximum) out.push(`At most ${prop.maximum}.`);
    if (type === 'integer' && !Number.isInteger(value)) out.push('A whole number.');
  }
  return out;
}

function JsonField({ id, value, onChange, describedBy, invalid }) {
  const [text, setText] = useState(() => (value === undefined ? '' : JSON.stringify(value, null, 2)));
  const [error, setError] = useState(null);
  return (
    <>
      <textarea
        id={id}
        className="sf-json"
        rows={3}
        value={text}
        aria-describedby={describedBy}
        aria-invalid={invalid || !!error || undefined}
        onChange={(e) => {
          setText(e.target.value);
          if (e.target.value.trim() === '') {
            setError(null);
            onChange(undefined);
            return;
          }
          try {
            onChange(JSON.parse(e.target.value));
            setError(null);
          } catch {
            setError('Not valid JSON yet.');
          }
        }}
      />
      {error && <span className="sf-error">{error}</span>}
    </>
  );
}

function Field({ name, prop, value, required, onChange, problems, secret, stored, secretValue, onSecretChange, idPrefix }) {
  const id = `${idPrefix}-${name}`;
  const label = prop.title || name;
  const type = typeOf(prop);
  const helpId = `${id}-help`;
  const errId = `${id}-err`;
  const messages = secret ? [] : [...fieldMessages(prop, value, required), ...(problems?.[name] ?? [])];
  const describedBy = [prop.description ? helpId : null, messages.length ? errId : null].filter(Boolean).join(' ') || undefined;
  const invalid = messages.length > 0 || undefined;

  if (type === 'object' && prop.properties && !secret) {
    return (
      <fieldset className="sf-fieldset">
        <legend>{label}</legend>
        {prop.description && <p className="sf-help">{prop.description}</p>}
        <SchemaFields
          schema={prop}
          value={value ?? {}}
          onChange={(v) => onChange(Object.keys(v).length ? v : undefined)}
          problems={nestedProblems(problems, name)}
          idPrefix={id}
        />
      </fieldset>
    );
  }

  let control;
  if (secret) {
    control = (
      <input
        id={id}
        type="password"
        autoComplete="new-password"
        value={secretValue ?? ''}
        placeholder={stored ? '•••••• stored — type to replace' : 'not set'}
        aria-describedby={describedBy}
        onChange={(e) => onSecretChange(e.target.value)}
      />
    );
  } else if (type === 'enum') {
    control = (
      <select id={id} value={value ?? ''} aria-describedby={describedBy} aria-invalid={invalid}
        onChange={(e) => onChange(e.target.value === '' ? undefined : e.target.value)}>
        <option value="">{prop.default !== undefined ? `Default (${prop.default})` : '— choose —'}</option>
        {prop.enum.map((opt) => <option key={String(opt)} value={opt}>{String(opt)}</option>)}
      </select>
    );
  } else if (type === 'boolean') {
    return (
      <div className="sf-field sf-check">
        <label htmlFor={id}>
          <input id={id} type="checkbox" checked={value ?? prop.default ?? false}
            aria-describedby={describedBy} onChange={(e) => onChange(e.target.checked)} />
          {label}
        </label>
        {prop.description && <p id={helpId} className="sf-help">{prop.description}</p>}
      </div>
    );
  } else if (type === 'integer' || type === 'number') {
    control = (
      <input id={id} type="number" value={value ?? ''} placeholder={prop.default !== undefined ? String(prop.default) : ''}
        min={prop.minimum} max={prop.maximum} step={type === 'integer' ? 1 : 'any'}
        aria-describedby={describedBy} aria-invalid={invalid} required={required}
        onChange={(e) => onChange(e.target.value === '' ? undefined : Number(e.target.value))} />
    );
  } else if (type === 'string') {
    control = (
      <input id={id} type="text" value={value ?? ''} placeholder={prop.default !== undefined ? String(prop.default) : ''}
        aria-describedby={describedBy} aria-invalid={invalid} required={required}
        onChange={(e) => onChange(e.target.value === '' ? undefined : e.target.value)} />
    );
  } else {
    control = <JsonField id={id} value={value} onChange={onChange} describedBy={describedBy} invalid={invalid} />;
  }

  return (
    <div className="sf-field">
      <label htmlFor={id}>
        {label}
        {required && <span className="sf-required" aria-hidden="true"> *</span>}
        {required && <span className="visually-hidden"> (required)</span>}
        {secret && <span className={`sf-secret ${stored ? 'is-stored' : ''}`}>{stored ? 'stored' : 'secret'}</span>}
      </label>
      {control}
      {prop.description && <p id={helpId} className="sf-help">{prop.description}</p>}
      {messages.length > 0 && (
        <p id={errId} className="sf-error" role="status">{messages.join(' ')}</p>
      )}
    </div>
  );
}

function nestedProblems(problems, name) {
  const out = {};
  for (const [key, msgs] of Object.entries(problems ?? {})) {
    if (key.startsWith(`${name}/`)) out[key.slice(name.length + 1)] = msgs;
  }
  return out;
}

function SchemaFields({ schema, value, onChange, problems, secretFields = [], storedSecrets = {}, secrets = {}, onSecretsChange, idPrefix }) {
  const props = schema?.properties ?? {};
  const required = schema?.required ?? [];
  const keys = Object.keys(props);
  // Secret fields the schema does not list (they live outside config) still get a field.
  const extraSecrets = secretFields.filter((f) => !(f in props));
  if (keys.length === 0 && extraSecrets.length === 0) {
    return <p className="sf-help">Nothing to configure.</p>;
  }
  return (
    <>
      {keys.map((key) => {
        const secret = secretFields.includes(key);
        return (
          <Field
            key={key}
            name={key}
            prop={props[key]}
            value={value?.[key]}
            required={required.includes(key)}
            problems={problems}
            idPrefix={idPrefix}
            secret={secret}
            stored={!!storedSecrets[key]}
            secretValue={secrets[key]}
            onSecretChange={(v) => onSecretsChange?.({ ...secrets, [key]: v })}
            onChange={(v) => {
              const next = { ...(value ?? {}) };
              if (v === undefined) delete next[key];
              else next[key] = v;
              onChange(next);
            }}
          />
        );
      })}
      {extraSecrets.map((key) => (
        <Field
          key={key}
          name={key}
          prop={{ title: key.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase()), type: 'string' }}
          secret
          stored={!!storedSecrets[key]}
          secretValue={secrets[key]}
          onSecretChange={(v) => onSecretsChange?.({ ...secrets, [key]: v })}
          idPrefix={idPrefix}
        />
      ))}
    </>
  );
}

/**
 * props: schema, value, onChange(value), problems ({ "field" or "a/b": [messages] } from the
 * server), secretFields, storedSecrets ({field: bool}), secrets, onSecretsChange, label.
 */
export default function SchemaForm({ label, ...rest }) {
  const idPrefix = useId().replace(/:/g, '');
  return (
    <div className="schema-form" role="group" aria-label={label}>
      <SchemaFields {...rest} idPrefix={idPrefix} />
    </div>
  );
}
