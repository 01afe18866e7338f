import Link from './Link.jsx';
import PageHeading from './PageHeading.jsx';

export default function NotFoundPage() {
  return (
    <>
      <PageHeading title="Page not found" />
      <p>
        There is nothing here. Go to <Link to="/flows">Flows</Link>, <Link to="/runs">Runs</Link>,{' '}
        <Link to="/dead-letters">Dead letters</Link> or <Link to="/connections">Connections</Link>.
      </p>
    </>
  );
}
