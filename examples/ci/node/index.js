'use strict';
// Titles to URL slugs: "Hello, World 2" → "hello-world-2".
const isNumber = require('is-number');

function slugify(title) {
  if (typeof title !== 'string' && !isNumber(title)) {
    throw new TypeError('a title is a string or a number');
  }
  return String(title)
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

module.exports = { slugify };
