'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { slugify } = require('../index.js');

test('joins words with dashes', () => {
  assert.strictEqual(slugify('Hello, World 2'), 'hello-world-2');
});

test('drops accents', () => {
  assert.strictEqual(slugify('Café Crème'), 'cafe-creme');
});

test('takes numbers', () => {
  assert.strictEqual(slugify(42), '42');
});

test('refuses objects', () => {
  assert.throws(() => slugify({}), TypeError);
});
