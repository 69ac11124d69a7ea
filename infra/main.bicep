// Outlook <-> Workbooks sync: everything one deployment needs, in one resource group.
//
// Plain Bicep on purpose (no registry modules), so the file parses offline and the test suite
// can check it against the code (tests/test_infra.py, devkit/checks/infra.py).
// Compiling to ARM, what-if and deployment need the Bicep CLI and Azure access.
//
// No secrets here: the Graph client secret and the per-user Workbooks API keys live in the
// Key Vault created below and are set by an operator after deployment (docs/deploy.md).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@minLength(2)
@maxLength(20)
@description('Short base name (environment name): letters, digits and hyphens; resource names are derived from it.')
param name string

@description('Azure region for every resource. Must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Extra tags applied to every resource.')
param tags object = {}

@description('Entra ID tenant (GUID) that holds the synced mailboxes and the app registration; empty = the tenant of this subscription.')
param graphTenantId string = ''

@minLength(36)
@maxLength(36)
@description('Application (client) id of the Entra ID app registration (docs/app-registration.md).')
param graphClientId string

@description('Name of the Key Vault secret that holds the app registration client secret (unused with graphFederatedCredential).')
param graphClientSecretName string = 'graph-client-secret'

@description('true = sign in to Graph with a federated credential on the app registration that trusts the user-assigned identity (no client secret; the app registration must be in this subscription\'s tenant; docs/app-registration.md). false = client secret from Key Vault.')
param graphFederatedCredential bool = false

@description('Workbooks endpoint that links an email to a record; confirm on the tenant with metadata/types (docs/workbooks-setup.md). Empty = email/email_links (unconfirmed default).')
param workbooksEmailLinkPath string = ''

@minLength(1)
@maxLength(40)
@description('Prefix of every table name (SYNC_TABLE_PREFIX).')
param tablePrefix string = 'sync'

@minLength(3)
@maxLength(56)
@description('Queue that carries sync jobs (SYNC_JOBS_QUEUE); its poison queue is <name>-poison, and Azure allows 63 characters, so at most 56 (the app checks the same).')
param jobsQueueName string = 'sync-jobs'

@description('NCRONTAB (seconds first, UTC) of the push tick: each tick queues the mailboxes whose push is due (each mailbox has its own interval, policy push_interval_minutes).')
param pushSchedule string = '20 * * * * *'

@description('NCRONTAB (seconds first, UTC) of the reconcile tick: each tick queues the mailboxes whose two-way reconciliation is due (policy reconcile_interval_minutes).')
param reconcileSchedule string = '0 * * * * *'

@description('NCRONTAB (seconds first, UTC): Graph subscription renewal sweep.')
param renewSchedule string = '0 7 */4 * * *'

@description('NCRONTAB (seconds first, UTC) of the To Do poll tick: each tick queues the mailboxes whose To Do poll is due (policy todo_poll_minutes).')
param todoPollSchedule string = '40 * * * * *'

@description('NCRONTAB (seconds first, UTC): created-since poll for retroactive email links where no Workbooks webhook covers a source.')
param retroPollSchedule string = '0 */4 * * * *'

@description('NCRONTAB (seconds first, UTC): the sweeper, which re-sends jobs for streams whose run was cut or whose job was lost.')
param sweepSchedule string = '*/30 * * * * *'

@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
@description('Log level of the service loggers (SYNC_LOG_LEVEL).')
param logLevel string = 'INFO'

// 2048 and 4096 MB are the sizes every Flex Consumption region accepts. 512 MB is documented
// since 2025 but was refused at this API version in some regions
// (https://github.com/Azure/azure-rest-api-specs/issues/40898), and the app needs 2048 anyway.
@allowed([
  2048
  4096
])
@description('Flex Consumption instance memory size in MB: 2048 or 4096.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Upper bound on Flex Consumption instances (cost ceiling).')
param maximumInstanceCount int = 40

@minValue(0)
@maxValue(10)
@description('Always-ready instances for the HTTP function group (webhook latency); 0 = scale to zero.')
param alwaysReadyHttpInstances int = 0

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days.')
param logRetentionDays int = 30

@description('Email address that receives the alerts (poison messages, a failing mailbox, missed reconciliation, webhook 5xx). Empty = the alerts still fire in Azure Monitor but notify nobody.')
param alertEmailAddress string = ''

// Log alert windows Azure Monitor accepts (ISO 8601).
@allowed([
  'PT1H'
  'PT2H'
  'PT3H'
  'PT4H'
  'PT5H'
  'PT6H'
  'P1D'
])
@description('Alert when no reconcile run succeeded for this long; at least two intervals of reconcileSchedule (the check in devkit/checks/infra.py verifies the defaults).')
param reconcileAlertWindow string = 'PT1H'

@description('Key Vault purge protection. Keep true in production. With true, a deleted vault (e.g. azd down) keeps its name for softDeleteRetentionDays and cannot be purged, so azd down/up in the same resource group fails until then; a vault once created with true cannot be switched back.')
param keyVaultPurgeProtection bool = true

@minValue(7)
@maxValue(90)
@description('Days a deleted Key Vault (and deleted secrets) stay recoverable.')
param keyVaultSoftDeleteDays int = 90

@description('Application (client) id of the Entra ID app registration people sign in to the Sync Center console with (docs/console.md): ID tokens enabled, redirect URI https://<host>/.auth/login/aad/callback, app role SyncCenter.Admin. Empty = no App Service Authentication, and the console refuses every request.')
param consoleClientId string = ''

@description('Optional object id of the operator (user or group) who sets secrets and runs the CLI; empty = none.')
param principalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of principalId: User when a person deploys; ServicePrincipal for a CI pipeline (azd passes AZURE_PRINCIPAL_TYPE).')
param principalType string = 'User'

// ---------------------------------------------------------------------------------------------
// Names and constants
// ---------------------------------------------------------------------------------------------

var effectiveTenantId = empty(graphTenantId) ? subscription().tenantId : graphTenantId
var emailLinkPath = empty(workbooksEmailLinkPath) ? 'email/email_links' : workbooksEmailLinkPath
var resourceToken = toLower(uniqueString(resourceGroup().id, name, location))
var allTags = union(tags, {
  'azd-env-name': name
  application: 'outlook-workbooks-sync'
})
var identityName = 'id-${name}-${resourceToken}'
var compactName = take(replace(toLower(name), '-', ''), 9) // globally unique names: 2 + 9 + 13 = 24 chars
var storageAccountName = 'st${compactName}${resourceToken}'
var logAnalyticsName = 'log-${name}-${resourceToken}'
var appInsightsName = 'appi-${name}-${resourceToken}'
var keyVaultName = 'kv${compactName}${resourceToken}'
var planName = 'plan-${name}-${resourceToken}'
var functionAppName = 'func-${name}-${resourceToken}'
var deploymentContainerName = 'app-package'

// Flex "always ready" instances for the HTTP function group (the Graph webhook).
var alwaysReadyHttp = [
  {
    name: 'http'
    instanceCount: alwaysReadyHttpInstances
  }
]

// Logical table names; physical name = tablePrefix + logical (sync/state/tables.py TABLES).
var logicalTables = [
  'mailboxes'
  'subscriptions'
  'cursors'
  'dirty'
  'links'
  'emails'
  'runs'
  'jobs'
]

// Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: allTags
}

// ---------------------------------------------------------------------------------------------
// Storage: host storage, deployment package container, the app's tables and queues
// ---------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: allTags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Public endpoint on purpose (docs/deploy.md#network-access): the app reaches storage over it
    // without VNet integration, and shared keys are disabled, so every request needs Entra ID.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource jobsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: jobsQueueName
}

// The host creates <queue>-poison on first use; creating it up front lets the operator CLI
// and the poison-count alert work before the first failure.
resource jobsPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${jobsQueueName}-poison'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in logicalTables: {
    parent: tableService
    name: '${tablePrefix}${table}'
  }
]

// ---------------------------------------------------------------------------------------------
// Monitoring: Log Analytics + workspace-based Application Insights (Entra ID auth only)
// ---------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: allTags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: allTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------
// Alerts (docs/operations.md#alerts), sent to one action group
//
// The queries use only what the service emits today: the function names (sync/blueprints, the
// host records each invocation in `requests` because host.json logs Host.Results at Information),
// the host's poison-queue warning, and the worker's line per job
//   "job <job id> <mailbox>/<stream> <kind>: <status> <counts>"   (sync/blueprints/worker.py).
// devkit/checks/infra.py checks the function and queue names against the code.
// ---------------------------------------------------------------------------------------------

var alertEmailReceivers = [
  {
    name: 'operator'
    emailAddress: alertEmailAddress
    useCommonAlertSchema: true
  }
]

resource alertActionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${name}-${resourceToken}'
  location: 'global'
  tags: allTags
  properties: {
    groupShortName: take('sync${compactName}', 12)
    enabled: true
    emailReceivers: empty(alertEmailAddress) ? [] : alertEmailReceivers
  }
}

// The host moves a job to <queue>-poison after host.json's maxDequeueCount failed attempts and
// logs "Message has reached MaxDequeueCount of 5. Moving message to queue '<queue>-poison'.".
var poisonAlertQuery = format('''traces
| where message has "MaxDequeueCount" and message has "{0}"
| project timestamp, message''', '${jobsQueueName}-poison')

// A (mailbox, stream) whose runs have all failed or been retried for over an hour. Runs that
// raise are retried by the host and end in the poison queue (the alert above); runs that record
// "failed" (credentials or permissions) or "retry" (throttling, outages) are caught here.
var mailboxAlertQuery = '''let runs = traces
| where message startswith "job "
| parse message with "job " job_id " " mailbox "/" stream " " kind ": " status " " counts
| where isnotempty(mailbox) and status in ("ok", "failed", "retry");
runs
| summarize last_ok = maxif(timestamp, status == "ok") by mailbox, stream
| join kind=inner (runs | where status != "ok") on mailbox, stream
| where isnull(last_ok) or timestamp > last_ok
| summarize failing_since = min(timestamp), last_failure = max(timestamp), failures = count() by mailbox, stream
| where failing_since <= ago(1h) and last_failure >= ago(1h)'''

var reconcileAlertQuery = '''requests
| where name == "reconcile_timer" and success == true'''

var webhookAlertQuery = '''requests
| where name in ("graph_notifications", "graph_lifecycle")
| where toint(resultCode) >= 500 or success == false
| project timestamp, name, resultCode, duration'''

var alertRules = [
  {
    key: 'poison'
    displayName: 'Sync jobs moved to the poison queue'
    description: 'A job failed on every attempt and now waits in ${jobsQueueName}-poison. Find the cause (python -m sync poison list, python -m sync status), fix it, then requeue or purge.'
    severity: 2
    query: poisonAlertQuery
    operator: 'GreaterThan'
    threshold: 0
    frequency: 'PT15M'
    window: 'PT30M' // overlapping windows: a line ingested late is still counted
    dimensions: []
  }
  {
    key: 'mailbox-failing'
    displayName: 'A mailbox has been failing for over an hour'
    description: 'Every run of one mailbox stream has failed or been retried for more than an hour. A 401 from Workbooks or ErrorAccessDenied from Graph is configuration, not a transient fault (docs/operations.md).'
    severity: 2
    query: mailboxAlertQuery
    operator: 'GreaterThan'
    threshold: 0
    frequency: 'PT15M'
    window: 'PT6H'
    dimensions: [
      {
        name: 'mailbox'
        operator: 'Include'
        values: [
          '*'
        ]
      }
      {
        name: 'stream'
        operator: 'Include'
        values: [
          '*'
        ]
      }
    ]
  }
  {
    key: 'no-reconcile'
    displayName: 'No reconcile run'
    description: 'The reconcile timer has not completed successfully for two intervals: the host may have failed to index it (a missing setting, an import error) or the app is stopped.'
    severity: 1
    query: reconcileAlertQuery
    operator: 'LessThan'
    threshold: 1
    frequency: 'PT15M'
    window: reconcileAlertWindow
    dimensions: []
  }
  {
    key: 'webhook-5xx'
    displayName: 'Graph webhook answered 5xx'
    description: 'A Graph notification could not be accepted (usually storage). Graph retries for up to 4 hours; look at exceptions at the same time.'
    severity: 1
    query: webhookAlertQuery
    operator: 'GreaterThan'
    threshold: 0
    frequency: 'PT5M'
    window: 'PT10M'
    dimensions: []
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in alertRules: {
    name: 'alert-${rule.key}-${name}-${resourceToken}'
    location: location
    tags: allTags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsights.id
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: rule.operator
            threshold: rule.threshold
            dimensions: rule.dimensions
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      // Stateful: one notification when an alert fires, one when it resolves, none in between.
      autoMitigate: true
      actions: {
        actionGroups: [
          alertActionGroup.id
        ]
      }
    }
  }
]

// ---------------------------------------------------------------------------------------------
// Key Vault (RBAC mode): Graph client secret, one secret per Workbooks user API key
// ---------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: allTags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: keyVaultSoftDeleteDays
    // Azure refuses false here: purge protection can only be switched on, so leave it unset.
    enablePurgeProtection: keyVaultPurgeProtection ? true : null
    // Public endpoint on purpose (docs/deploy.md#network-access): Flex Consumption without VNet
    // integration reaches the vault over it; access needs an Entra ID token and an RBAC role.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Function app: Flex Consumption, Python 3.11, user-assigned identity
// ---------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: allTags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(allTags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: (alwaysReadyHttpInstances > 0) ? alwaysReadyHttp : []
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    deploymentContainer
    storageBlobOwner
  ]
}

// Sign-in for the Sync Center console (docs/console.md): App Service Authentication with
// Microsoft Entra ID.  It signs people in, strips any X-MS-CLIENT-PRINCIPAL header a client sent
// and adds its own; the app trusts that header only while this is on (WEBSITE_AUTH_ENABLED).
// No client secret: sign-in uses the OpenID Connect ID token (enable ID tokens on the app
// registration), and the token store stays off because the app never calls an API as the user.
// Admins hold the app role SyncCenter.Admin, which arrives as a 'roles' claim.
resource consoleAuth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(consoleClientId)) {
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: anonymousPaths
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: consoleClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${effectiveTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            consoleClientId
            'api://${consoleClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// No FTP or basic-auth publishing: deployments go through the blob container and Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// Every setting the app and the host read. Kept in one place so the consistency test can compare
// it with sync/settings.py. Defaults the code already has are not repeated here unless the infra
// depends on them (names of tables and queues, timer schedules); see infra/optional-settings.txt.
// Applied after the site exists so SYNC_PUBLIC_BASE_URL can use the site's default host name.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Host storage through the managed identity (no connection string, no account key).
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    // azure-identity's DefaultAzureCredential picks the user-assigned identity from this.
    AZURE_CLIENT_ID: identity.properties.clientId
    // Telemetry with Entra ID auth (local auth is disabled on the component).
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // Tables and queues created above.
    SYNC_TABLE_PREFIX: tablePrefix
    SYNC_JOBS_QUEUE: jobsQueueName
    // Timer schedules: the host resolves %SETTING% in timer triggers and fails to index a timer
    // whose setting is missing, so these must always be present.
    SYNC_PUSH_SCHEDULE: pushSchedule
    SYNC_RECONCILE_SCHEDULE: reconcileSchedule
    SYNC_RENEW_SCHEDULE: renewSchedule
    SYNC_TODO_POLL_SCHEDULE: todoPollSchedule
    SYNC_RETRO_POLL_SCHEDULE: retroPollSchedule
    SYNC_SWEEP_SCHEDULE: sweepSchedule
    // Where Graph sends notifications: https://<host>/api/graph/notifications and /lifecycle.
    SYNC_PUBLIC_BASE_URL: 'https://${functionApp.properties.defaultHostName}'
    SYNC_SECRETS_PROVIDER: 'keyvault'
    SYNC_KEY_VAULT_URL: keyVault.properties.vaultUri
    SYNC_LOG_LEVEL: logLevel
    GRAPH_TENANT_ID: effectiveTenantId
    GRAPH_CLIENT_ID: graphClientId
    // Key Vault reference, resolved by the platform with keyVaultReferenceIdentity.
    // Empty with graphFederatedCredential: the app then signs in with the federated credential.
    GRAPH_CLIENT_SECRET: graphFederatedCredential ? '' : '@Microsoft.KeyVault(VaultName=${keyVault.name};SecretName=${graphClientSecretName})'
    // Confirm on the tenant before relying on it (docs/workbooks-setup.md).
    WORKBOOKS_EMAIL_LINK_PATH: emailLinkPath
  }
  dependsOn: [
    storageQueueContributor
    storageTableContributor
    keyVaultSecretsUser
    metricsPublisher
  ]
}

// ---------------------------------------------------------------------------------------------
// Role assignments for the app identity, each scoped to the one resource it needs
// ---------------------------------------------------------------------------------------------

// Host storage (keys, timer schedule monitor, leases) and the deployment package container.
resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Jobs queue, its poison queue, and the host's queue-trigger bookkeeping.
resource storageQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The app's state tables.
resource storageTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Key Vault references and the runtime secrets provider (read secrets only).
resource keyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry with Entra ID auth.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Optional: the operator who sets secrets and runs `python -m sync ...` against this storage
// ---------------------------------------------------------------------------------------------

resource operatorSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(keyVault.id, principalId, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: principalId
    principalType: principalType
  }
}

resource operatorTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

resource operatorQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment; docs/deploy.md and docs/operations.md use them)
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.name
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.properties.defaultHostName
output AZURE_KEY_VAULT_NAME string = keyVault.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.name
output AZURE_APPLICATION_INSIGHTS_NAME string = appInsights.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output SYNC_PUBLIC_BASE_URL string = 'https://${functionApp.properties.defaultHostName}'
output SYNC_KEY_VAULT_URL string = keyVault.properties.vaultUri
output SYNC_TABLE_SERVICE_URI string = storage.properties.primaryEndpoints.table
output SYNC_QUEUE_SERVICE_URI string = storage.properties.primaryEndpoints.queue
output GRAPH_NOTIFICATION_URL string = 'https://${functionApp.properties.defaultHostName}/api/graph/notifications'
output GRAPH_LIFECYCLE_URL string = 'https://${functionApp.properties.defaultHostName}/api/graph/lifecycle'
// The federated credential to add on the app registration when graphFederatedCredential is true.
output GRAPH_FEDERATED_CREDENTIAL_ISSUER string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
output GRAPH_FEDERATED_CREDENTIAL_SUBJECT string = identity.properties.principalId
output AZURE_ALERT_ACTION_GROUP_NAME string = alertActionGroup.name
output SYNC_CONSOLE_URL string = 'https://${functionApp.properties.defaultHostName}/api/console'
// The redirect URI to add (platform: Web) on the console's app registration.
output SYNC_CONSOLE_REDIRECT_URI string = 'https://${functionApp.properties.defaultHostName}/.auth/login/aad/callback'

// ---------------------------------------------------------------------------------------------
// Console sign-in: the paths App Service Authentication lets through without one (consoleAuth;
// Bicep declarations may come in any order): Graph's webhooks (each notification carries its
// subscription's clientState), Workbooks' webhook (each delivery is signed with its
// subscription's secret: X-Workbooks-Signature) and the operator API, which keeps its function keys because
// scripts cannot sign in interactively.  Everything else, the console, needs a sign-in.
// tests/console/test_infra_auth.py checks that every route of the app except the console's is
// listed here, and nothing more.
var anonymousPaths = [
  '/api/graph/notifications'
  '/api/graph/lifecycle'
  '/api/workbooks/webhook/*'
  '/api/sync/*'
  '/api/status'
  '/api/items/*'
  '/api/emails/*'
  '/api/doctor/*'
]
