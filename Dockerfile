# One image for the api, worker, sandbox-aggregator and migrate services (docker-compose.yml picks the command).
FROM node:20-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund --omit=dev
COPY . .
USER node
CMD ["node", "--import", "tsx", "apps/api/main.ts"]
