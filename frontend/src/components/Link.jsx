import { navigate } from '../router.js';

/** An <a> that navigates client-side on a plain left click and behaves normally otherwise. */
export default function Link({ to, onClick, children, ...rest }) {
  function handleClick(event) {
    onClick?.(event);
    if (
      event.defaultPrevented || event.button !== 0 ||
      event.metaKey || event.ctrlKey || event.shiftKey || event.altKey
    ) return;
    event.preventDefault();
    navigate(to);
  }
  return (
    <a href={to} onClick={handleClick} {...rest}>
      {children}
    </a>
  );
}
