-- The course's ksqlDB section (7.3.2) as printed, fed from PostgreSQL by a source connector.
-- Tests: tests/tests/connectors_postgres.rs (against a real PostgreSQL; it replaces
-- 127.0.0.1:5432 below by its own server's port).
-- The PostgreSQL tables are "geoEvents" (profile_id, rideId, vehicleId, latitude, longitude,
-- dstLatitude, dstLongitude, id) and "profiles" (profile_id, name, id); the connector writes
-- their rows to topics ridergeoEvents and riderprofiles (topic.prefix + table name), keyed by
-- profile_id. The course leaves out the declarations of geoEvents and of what fills topic
-- 'locations': they are the two statements marked "not in the course".

CREATE SOURCE CONNECTOR riders WITH (
  'connector.class' = 'JdbcSourceConnector',
  'connection.url'  = 'jdbc:postgresql://127.0.0.1:5432/rides?user=eddy&password=eddy',
  'topic.prefix'    = 'rider',
  'table.whitelist' = 'geoEvents, profiles',
  'key'             = 'profile_id',
  'mode'            = 'incrementing',
  'incrementing.column.name' = 'id',
  'poll.interval.ms' = '100');

-- Not in the course: the stream over the connector's topic.
CREATE STREAM geoEvents (profile_id VARCHAR, rideId VARCHAR, vehicleId VARCHAR,
                         latitude DOUBLE, longitude DOUBLE, dstLatitude DOUBLE, dstLongitude DOUBLE)
  WITH (kafka_topic = 'ridergeoEvents', value_format = 'json', partitions = 1);

CREATE STREAM locations AS
  SELECT rideId,
         latitude,
         longitude,
         GEO_DISTANCE(latitude,
                       longitude,
                       dstLatitude,
                       dstLongitude
                     ) AS kmToDst

  FROM geoEvents
  EMIT CHANGES;

CREATE TABLE activePromotions AS
  SELECT rideId,
         qualifyPromotion(kmToDst) AS promotion
  FROM locations
  GROUP BY rideId
  EMIT CHANGES;

SELECT rideId, promotion  
FROM activePromotions  
WHERE ROWKEY = '6fd0fcdb';

CREATE STREAM routeWaypoints (  
    vehicleId VARCHAR,  
    latitude DOUBLE(10, 2),  
    longitude DOUBLE(10, 2)  
) WITH (  
    kafka_topic = 'locations',  
    partitions = 3,  
    key = 'vehicleId',  
    value_format = 'json'  
);

-- Not in the course: the cars' positions into topic 'locations', keyed by vehicle.
CREATE STREAM carPositions WITH (kafka_topic = 'locations', partitions = 3) AS
  SELECT vehicleId AS vid, AS_VALUE(vehicleId) AS vehicleId, latitude, longitude
  FROM geoEvents
  PARTITION BY vehicleId;

CREATE TABLE currentCarLocations (  
  vehicleId VARCHAR,  
  latitude DOUBLE(10, 2),  
  longitude DOUBLE(10, 2)  
) WITH (  
  kafka_topic = 'locations',  
  partitions = 3,  
  key = 'vehicleId',  
  value_format = 'json'  
);

SELECT vehicleId,  
        latitude,  
        longitude  
FROM currentCarLocations  
WHERE ROWKEY = '6fd0fcdb';

SELECT vehicleId,  
        latitude,  
        longitude  
FROM currentCarLocations  
WHERE ROWKEY = '6fd0fcdb'  
EMIT CHANGES;
