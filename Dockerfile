# One image for the api, worker, outbox-publisher, sandbox-aggregator and migrate services (docker-compose.yml
# and deploy/k8s pick the command). Production runs compiled JavaScript with plain node: no tsx, no dev deps.

# Build: every dependency (typescript, tsc-alias), then `npm run build` into dist/.
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY apps ./apps
COPY activities ./activities
COPY contracts ./contracts
COPY ledger ./ledger
COPY lib ./lib
COPY temporal ./temporal
COPY workflows ./workflows
RUN npm run build

# Runtime: production dependencies (the worker bundles its workflows at start with @temporalio/worker's
# webpack), the compiled dist/ and the SQL migrations (found next to package.json).
FROM node:20-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY migrations ./migrations
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000 9464 9465 9466
CMD ["node", "dist/apps/api/main.js"]
