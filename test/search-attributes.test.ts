import { describe, expect, it } from 'vitest';
import { CUSTOM_SEARCH_ATTRIBUTES } from '../temporal/search-attributes';
import { SA } from '../contracts/search-attributes';

describe('custom search attributes', () => {
  it('the workflows upsert exactly the attributes the dev server and compose register, with their types', () => {
    const used = Object.fromEntries(Object.values(SA).map((key) => [key.name, key.type]));
    const registered = Object.fromEntries(Object.entries(CUSTOM_SEARCH_ATTRIBUTES).map(([name, type]) => [name, type.toUpperCase()]));
    expect(used).toEqual(registered);
  });
});
